// The shared conformance suite on the C++ matcher through the addon.
import { NativeMatcher } from '../src/match/native-matcher.js';
import { runMatcherSuite } from './matcher.suite.js';

runMatcherSuite('NativeMatcher', () => new NativeMatcher());
