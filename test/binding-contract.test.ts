// The binding contract (src/native.ts BindingContract, native/binding/contract.cc): the built addon's
// numbers and names agree with this code's, and a contract that differs anywhere is refused with every
// difference named and the rebuild command.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BindingContractError, checkContract, contractMismatches, expectedContract, loadBinding, type BindingContract } from '../src/native.js';

/** Every leaf of the contract (a number, or a list of names) as a path of keys. */
function leaves(value: unknown, path: string[] = []): string[][] {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    return Object.entries(value).flatMap(([k, v]) => leaves(v, [...path, k]));
  }
  return [path];
}

function tampered(contract: BindingContract, path: string[], change: (v: unknown) => unknown): BindingContract {
  const copy = structuredClone(contract) as unknown as Record<string, unknown>;
  let node = copy;
  for (const k of path.slice(0, -1)) node = node[k] as Record<string, unknown>;
  node[path[path.length - 1]] = change(node[path[path.length - 1]]);
  return copy as unknown as BindingContract;
}

test("the built addon's contract is this code's, value for value", () => {
  const { CONTRACT } = loadBinding();
  assert.deepEqual(contractMismatches(CONTRACT), []);
  assert.deepEqual(CONTRACT, expectedContract());
  assert.doesNotThrow(() => checkContract(CONTRACT));
});

test('every value of the contract is compared: changing any one is one difference that names it', () => {
  const { CONTRACT } = loadBinding();
  const paths = leaves(CONTRACT);
  assert.ok(paths.length >= 60, `the contract has ${paths.length} values`);
  for (const path of paths) {
    const changed = tampered(CONTRACT, path, (v) => (Array.isArray(v) ? [...v].reverse() : (v as number) + 1));
    const found = contractMismatches(changed);
    assert.equal(found.length, 1, `${path.join('.')}: ${found.join('; ')}`);
    assert.ok(found[0].startsWith(`CONTRACT.${path.join('.')}: the addon has `), found[0]);
  }
});

test('a tampered contract is refused with every difference and the rebuild command', () => {
  let c = structuredClone(loadBinding().CONTRACT);
  c = tampered(c, ['captureStats'], (v) => {
    const names = [...(v as string[])];
    [names[0], names[1]] = [names[1], names[0]];
    return names;
  });
  c = tampered(c, ['eventRecord', 'size'], () => 48);
  c = tampered(c, ['program', 'version'], () => 2);
  c = tampered(c, ['engineErrors'], (v) => ({ ...(v as object), QUEUE_FULL: 5 }));
  c = tampered(c, ['spa'], (v) => {
    const { maxPayload: _dropped, ...rest } = v as BindingContract['spa'];
    return rest;
  });
  assert.throws(
    () => checkContract(c),
    (err: Error) => {
      assert.ok(err instanceof BindingContractError);
      const lines = err.message.split('\n');
      assert.match(lines[0], /built from other sources than this code \(5 differences/);
      for (const expected of [
        'CONTRACT.eventRecord.size: the addon has 48, this code 40',
        'CONTRACT.engineErrors.QUEUE_FULL: the addon has 5, this code nothing',
        'CONTRACT.captureStats: the addon has ["ringDrops","ringPackets",',
        'CONTRACT.program.version: the addon has 2, this code 1',
        'CONTRACT.spa.maxPayload: the addon has nothing, this code 1500',
      ]) {
        assert.ok(lines.some((l) => l.trim().startsWith(expected)), `${expected} in:\n${err.message}`);
      }
      assert.match(lines[lines.length - 1], /npm run build:native/);
      return true;
    },
  );
  assert.throws(() => checkContract(undefined), /CONTRACT: the addon has nothing, this code an object of eventRecord/);
});
