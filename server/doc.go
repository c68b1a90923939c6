// Package server turns socket bytes into engine calls and back: gnet's
// event handler for the plain port, a goroutine per connection for the TLS
// port, per-connection state (protocol detection, login, buffers), and
// memcached's "stats" commands. It detects each connection's protocol from
// its first byte, parses requests with codec, asks package tenancy which
// cache a login uses, runs every command on that cache's engine.Engine,
// and writes every reply of one event-loop wake-up with a single write.
//
// # A text get, from socket to slab chunk and back
//
// With the files and functions in the order they run, for "get k\r\n" on
// a logged-in text connection:
//
//  1. server.go, OnTraffic: gnet has read bytes for the connection;
//     c.Peek(-1) returns them without a copy.
//  2. server.go, step: checks that no control-plane change has revoked the
//     login (tenancy.Tenants.Revoked), joins a request split over reads
//     (conn.in), records activity, then process.
//  3. server.go, process: detects the protocol from the first byte, then
//     codec.Parser.ParseASCII (codec/ascii.go: ParseASCII, dispatchASCII,
//     retrieveASCII) fills conn.req: Cmd = CmdGet, Keys pointing into the
//     input buffer, no copy.
//  4. ascii.go, execASCII: checks the credential's capabilities (auth.go,
//     denied), then asciiRetrieve: for each key, engine.Engine.Get.
//  5. engine/ops.go, Get and lookup; engine/engine.go, lockKey: the key's
//     go-farm hash picks a stripe (stripeFor) and its bucket, the clock is
//     read, the stripe's mutex locked.
//  6. engine/stripe.go, getLocked: findLocked walks the bucket's hash
//     chain comparing keys in arena memory (slab.Items.Key, slab/item.go:
//     a Handle is an offset, no pointer); validLocked drops an expired or
//     flushed item; the hit is counted and the item bumped in its LRU
//     (touchLRULocked, slab.Allocator.Bump).
//  7. The engine returns a Ref holding the stripe's lock; asciiRetrieve
//     copies key, flags and value straight from the slab chunk into the
//     connection's output with codec.AppendValue (codec/reply.go), then
//     Ref.Release unlocks. "END\r\n" (codec.ReplyEnd) closes the reply.
//  8. Back in OnTraffic: the byte counters are added (step), c.Write
//     queues conn.out once for the whole wake-up, c.Discard drops the
//     consumed input, and gnet writes to the socket.
//
// No step allocates: conn.req, conn.out and conn.in are reused, and item
// memory is never copied to the Go heap.
//
// # A connection's states
//
//	state            what marks it                 how it is entered, and left
//	protocol unknown cs.proto == protoUnknown      opened; left at the first byte (0x80: binary)
//	unauthenticated  cs.tenant == nil (SASL mode)  opened, or a binary SASL command logged it out;
//	                                               left by a login (text set, SASL, a bound TLS
//	                                               client certificate: auth.go, tls.go), or
//	                                               closed after --auth-timeout (OnTick)
//	logged in        cs.tenant, cs.user set        bind; left by unbind (SASL command, close) or
//	                                               by revocation: step and closeRevoked close it
//	split request    len(cs.in) > 0                a read ended inside a request; left when the
//	                                               rest arrives; over the input limit it closes
//	swallowing       cs.swallow > 0                a refused storage command's data is still
//	                                               arriving; left once it has been discarded
//	held             cs.held                       the client does not read its replies (output
//	                                               over outputHold): requests wait in cs.in;
//	                                               wakeWhileHeld wakes the loop until they run;
//	                                               over heldLimit it closes
//	closing          cs.closing                    a reply that ends the connection is still
//	                                               being written; closeWhenDrained closes it once
//	                                               written, or after drainLimit
//	closed           cs.closed                     OnClose (or serveTLS's end) ran closeConn
//
// A TLS connection goes through the same states in serveTLS, which reads,
// calls step and writes on its own goroutine.
//
// # Lock order, for the whole process
//
// A goroutine holding one of these may take only those below it:
//
//  1. control.Bolt.writeMu (one change at a time), then deliverMu (watchers
//     called in commit order, after writeMu is released).
//  2. tenancy.Tenants.mu (the maps of caches and credentials); the applier's
//     own mu guards only its queue and is never held while a job runs.
//  3. engine.Engine.resizeMu (SetLimit and Close of one cache).
//  4. engine's stripe.mu (one stripe at a time, never two).
//  5. slab.Pool.mu (taken inside an allocator when a stripe needs a page).
//
// The server's own locks are leaves: throttle.mu guards the failed-login
// counts, and sync.Map (Server.conns) takes none of the above. Clocks,
// counters, and a connection's shared fields (sharedTenant, sharedUser,
// loginCert, held, closing) are atomics read without locks.
package server
