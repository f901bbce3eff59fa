/**
 * The filter's index of its tree: one node per entry, linked by name.
 *
 * Paths are derived from a node's position, never stored, so renaming a
 * directory is one detach and one attach however many entries it holds, and
 * anything bound to a node (a directory watch) follows it to its new name.
 * An inode table lets the rules pair a vanished entry with the name it
 * reappeared under.
 */

import { baseName, joinPath, parentOf } from './paths.js';
import type { Stat } from './types.js';

const NO_CHILDREN: ReadonlyMap<string, TreeNode> = new Map();

/** One entry. Kept small: a tree of a million entries holds a million of these. */
export class TreeNode {
  parent: TreeNode | undefined;
  /** Created with the first child: most entries are files and never need one. */
  private kids: Map<string, TreeNode> | undefined;
  /** Opaque slot for the shell (the directory's watch handle). */
  watch: unknown;

  constructor(
    public name: string,
    public stat: Stat,
  ) {}

  get children(): ReadonlyMap<string, TreeNode> {
    return this.kids ?? NO_CHILDREN;
  }

  setChild(child: TreeNode): void {
    (this.kids ??= new Map()).set(child.name, child);
  }

  deleteChild(name: string): void {
    this.kids?.delete(name);
    if (this.kids?.size === 0) this.kids = undefined;
  }
}

export class TreeIndex {
  readonly root: TreeNode;
  /** inode -> its node, or its nodes when hard links share it (rare: no array per entry). */
  private readonly byInode = new Map<number, TreeNode | TreeNode[]>();
  private count = 0;

  constructor(rootStat: Stat) {
    this.root = new TreeNode('', rootStat);
  }

  get size(): number {
    return this.count;
  }

  get(path: string): TreeNode | undefined {
    if (path === '') return this.root;
    let node: TreeNode | undefined = this.root;
    for (const part of path.split('/')) {
      node = node.children.get(part);
      if (node === undefined) return undefined;
    }
    return node;
  }

  pathOf(node: TreeNode): string {
    const parts: string[] = [];
    for (let n: TreeNode | undefined = node; n !== undefined && n !== this.root; n = n.parent) parts.push(n.name);
    return parts.reverse().join('/');
  }

  /** True while the node is still attached below the root. */
  isAttached(node: TreeNode): boolean {
    let n: TreeNode | undefined = node;
    while (n !== undefined && n !== this.root) n = n.parent;
    return n === this.root;
  }

  /** Nodes currently holding this inode (more than one only for hard links). */
  nodesWithInode(ino: number): TreeNode[] {
    const found = this.byInode.get(ino);
    return found === undefined ? [] : Array.isArray(found) ? [...found] : [found];
  }

  /**
   * Record `stat` at `path`, keeping the node (and its children) when one is
   * there already. The parent must be indexed; returns undefined when not.
   */
  set(path: string, stat: Stat): TreeNode | undefined {
    const existing = this.get(path);
    if (existing !== undefined) {
      this.unlinkInode(existing);
      existing.stat = stat;
      if (stat.type !== 'dir') this.dropChildren(existing);
      this.linkInode(existing);
      return existing;
    }
    const parent = this.get(parentOf(path));
    if (parent === undefined || parent.stat.type !== 'dir') return undefined;
    const node = new TreeNode(baseName(path), stat);
    this.attach(parent, node);
    return node;
  }

  /**
   * Detach the node at `path` with its subtree and return it, to be
   * re-attached elsewhere (a move): its inodes stay known meanwhile.
   */
  detach(path: string): TreeNode | undefined {
    const node = path === '' ? undefined : this.get(path);
    if (node === undefined || node.parent === undefined) return undefined;
    node.parent.deleteChild(node.name);
    node.parent = undefined;
    return node;
  }

  /** Forget the entry at `path` and everything below it. */
  remove(path: string): TreeNode | undefined {
    const node = this.detach(path);
    if (node !== undefined) this.forget(node);
    return node;
  }

  /** Attach a node detached by `detach` at `path`, replacing what is there. */
  attachAt(path: string, node: TreeNode): boolean {
    const parent = this.get(parentOf(path));
    if (parent === undefined || parent.stat.type !== 'dir') return false;
    const replaced = parent.children.get(baseName(path));
    if (replaced !== undefined && replaced !== node) this.remove(path);
    node.name = baseName(path);
    node.parent = parent;
    parent.setChild(node);
    return true;
  }

  /** Drop a detached subtree from the inode table and the count (O(subtree)). */
  forget(node: TreeNode): void {
    for (const n of this.walk(node)) {
      this.unlinkInode(n);
      this.count -= 1;
    }
  }

  /** The node and everything below it, parents before children. */
  *walk(node: TreeNode): Generator<TreeNode> {
    const stack = [node];
    while (stack.length > 0) {
      const n = stack.pop()!;
      yield n;
      for (const child of n.children.values()) stack.push(child);
    }
  }

  /** Paths of the node's descendants (not the node), deepest first. */
  descendantPathsDeepestFirst(path: string): string[] {
    const node = this.get(path);
    if (node === undefined) return [];
    const out: string[] = [];
    const visit = (n: TreeNode, at: string): void => {
      for (const child of n.children.values()) {
        const childPath = joinPath(at, child.name);
        visit(child, childPath);
        out.push(childPath);
      }
    };
    visit(node, path);
    return out;
  }

  private attach(parent: TreeNode, node: TreeNode): void {
    node.parent = parent;
    parent.setChild(node);
    for (const n of this.walk(node)) {
      this.linkInode(n);
      this.count += 1;
    }
  }

  private dropChildren(node: TreeNode): void {
    for (const child of [...node.children.values()]) this.remove(this.pathOf(child));
  }

  private linkInode(node: TreeNode): void {
    const found = this.byInode.get(node.stat.ino);
    if (found === undefined) this.byInode.set(node.stat.ino, node);
    else if (Array.isArray(found)) found.includes(node) || found.push(node);
    else if (found !== node) this.byInode.set(node.stat.ino, [found, node]);
  }

  private unlinkInode(node: TreeNode): void {
    const found = this.byInode.get(node.stat.ino);
    if (found === node) this.byInode.delete(node.stat.ino);
    else if (Array.isArray(found)) {
      const rest = found.filter((n) => n !== node);
      this.byInode.set(node.stat.ino, rest.length === 1 ? rest[0]! : rest);
    }
  }
}
