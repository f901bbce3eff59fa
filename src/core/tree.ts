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

export class TreeNode {
  parent: TreeNode | undefined;
  readonly children = new Map<string, TreeNode>();
  /** Opaque slot for the shell (the directory's watch handle). */
  watch: unknown;

  constructor(
    public name: string,
    public stat: Stat,
  ) {}
}

export class TreeIndex {
  readonly root: TreeNode;
  private readonly byInode = new Map<number, Set<TreeNode>>();
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
    return [...(this.byInode.get(ino) ?? [])];
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
    node.parent.children.delete(node.name);
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
    parent.children.set(node.name, node);
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
    parent.children.set(node.name, node);
    for (const n of this.walk(node)) {
      this.linkInode(n);
      this.count += 1;
    }
  }

  private dropChildren(node: TreeNode): void {
    for (const child of [...node.children.values()]) this.remove(this.pathOf(child));
  }

  private linkInode(node: TreeNode): void {
    let set = this.byInode.get(node.stat.ino);
    if (set === undefined) this.byInode.set(node.stat.ino, (set = new Set()));
    set.add(node);
  }

  private unlinkInode(node: TreeNode): void {
    const set = this.byInode.get(node.stat.ino);
    set?.delete(node);
    if (set?.size === 0) this.byInode.delete(node.stat.ino);
  }
}
