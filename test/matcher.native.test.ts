// The shared conformance suite on the C++ matcher through the addon.
import { test } from 'node:test';
import { NativeMatcher } from '../src/match/native-matcher.js';
import { nativeSkip } from './helpers/native.js';
import { runMatcherSuite } from './matcher-suite/index.js';

const skip = nativeSkip();
if (skip) test('NativeMatcher conformance suite', { skip }, () => {});
else runMatcherSuite('NativeMatcher', () => new NativeMatcher());
