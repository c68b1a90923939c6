// Package e2e holds end-to-end tests that drive a running memhive server
// through real, unmodified memcache clients and tools: libmemcached's
// memccapable (ASCII and binary conformance), gomemcache, pylibmc in binary
// mode (a script under testdata run by the system python), and a fill far
// past --memory that checks eviction and the process's resident memory.
//
// The tests start memhive with testserver.StartMemhive. Setting
// E2E_AGAINST=memcached runs the same tests against Debian's memcached
// 1.6.18 instead, which is how the tests themselves are validated: every
// expectation here is memcached's behaviour. A missing peer (memccapable,
// /usr/bin/python3 with pylibmc, memcached) fails the test; nothing skips.
//
// The package has no non-test code.
package e2e
