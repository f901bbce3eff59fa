import { describe, expect, test } from 'vitest';
import { Settler } from '../../src/core/settle.js';
import { described } from '../support/table.js';


const SETTLE_MS = 100;
const MAX_DELAY_MS = 1_000;

type Step = { touch: string; at: number } | { take: number; due: string[] } | { nextDueAt: number | undefined } | { size: number };

/** Steps run in order on one Settler(SETTLE_MS, MAX_DELAY_MS); times are plain numbers. */
describe('Settler', () => {
  test.each(described<{ description: string; steps: Step[] }>([
    {
      description: 'nothing pending: nothing due, no next time',
      steps: [{ nextDueAt: undefined }, { take: 1e9, due: [] }, { size: 0 }],
    },
    {
      description: 'a path is due after the quiet period, not before',
      steps: [{ touch: 'a', at: 0 }, { nextDueAt: 100 }, { take: 99, due: [] }, { take: 100, due: ['a'] }, { size: 0 }],
    },
    {
      description: 'a path is taken once',
      steps: [{ touch: 'a', at: 0 }, { take: 150, due: ['a'] }, { take: 300, due: [] }, { nextDueAt: undefined }],
    },
    {
      description: 're-touching postpones the path',
      steps: [
        { touch: 'a', at: 0 },
        { touch: 'a', at: 60 },
        { nextDueAt: 160 },
        { take: 100, due: [] },
        { take: 159, due: [] },
        { take: 160, due: ['a'] },
      ],
    },
    {
      description: 'a touch that arrives late (older time) does not pull the path forward',
      steps: [{ touch: 'a', at: 50 }, { touch: 'a', at: 10 }, { nextDueAt: 150 }, { take: 110, due: [] }, { take: 150, due: ['a'] }],
    },
    {
      description: 'a path that never goes quiet is forced out at the max delay',
      steps: [
        ...Array.from({ length: 20 }, (_, i) => ({ touch: 'log', at: i * 60 })),
        { nextDueAt: 1_000 },
        { take: 999, due: [] },
        { take: 1_000, due: ['log'] },
        { size: 0 },
      ],
    },
    {
      description: 'after being forced out, a busy path starts a new window',
      steps: [
        ...Array.from({ length: 18 }, (_, i) => ({ touch: 'log', at: i * 60 })),
        { take: 1_020, due: ['log'] },
        { touch: 'log', at: 1_030 },
        { nextDueAt: 1_130 },
        { take: 1_129, due: [] },
        { take: 1_130, due: ['log'] },
      ],
    },
    {
      description: 'nextDueAt is the earliest of several paths',
      steps: [{ touch: 'a', at: 0 }, { touch: 'b', at: 30 }, { touch: 'a', at: 50 }, { nextDueAt: 130 }, { size: 2 }],
    },
    {
      description: 'nextDueAt honours the max delay of a busy path',
      steps: [
        ...Array.from({ length: 20 }, (_, i) => ({ touch: 'log', at: i * 50 })),
        { touch: 'quiet', at: 920 },
        { nextDueAt: 1_000 },
      ],
    },
    {
      description: 'only the due paths are taken, the rest stay pending',
      steps: [
        { touch: 'a', at: 0 },
        { touch: 'b', at: 50 },
        { take: 100, due: ['a'] },
        { size: 1 },
        { nextDueAt: 150 },
        { take: 150, due: ['b'] },
      ],
    },
    {
      description: 'due paths come out in the order they were first touched, not last touched',
      steps: [
        { touch: 'b', at: 0 },
        { touch: 'a', at: 10 },
        { touch: 'c', at: 20 },
        { touch: 'b', at: 30 },
        { take: 500, due: ['b', 'a', 'c'] },
      ],
    },
    {
      description: 'a path taken and touched again goes to the end of the order',
      steps: [
        { touch: 'a', at: 0 },
        { touch: 'b', at: 150 },
        { take: 100, due: ['a'] },
        { touch: 'a', at: 160 },
        { take: 1_000, due: ['b', 'a'] },
      ],
    },
  ]))('%s', (_description, { steps }) => {
    const settler = new Settler(SETTLE_MS, MAX_DELAY_MS);
    for (const step of steps) {
      if ('touch' in step) settler.touch(step.touch, step.at);
      else if ('take' in step) expect(settler.takeDue(step.take), `takeDue(${step.take})`).toEqual(step.due);
      else if ('nextDueAt' in step) expect(settler.nextDueAt()).toBe(step.nextDueAt);
      else expect(settler.size).toBe(step.size);
    }
  });

  test('a max delay shorter than the settle delay wins', () => {
    const settler = new Settler(500, 200);
    settler.touch('a', 0);
    expect(settler.nextDueAt()).toBe(200);
    expect(settler.takeDue(200)).toEqual(['a']);
  });
});
