// The shared conformance suite on the pure-TypeScript matcher.
import { TsMatcher } from '../src/match/matcher.js';
import { runMatcherSuite } from './matcher-suite/index.js';

runMatcherSuite('TsMatcher', () => new TsMatcher());
