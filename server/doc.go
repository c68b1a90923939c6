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
//     chain comparing keys in arena memory (slab.SegItems.Key,
//     slab/segitems.go: a Handle is an offset, no pointer); validLocked
//     drops an expired or flushed item; the hit is counted and the item
//     marked read, so that a merge keeps it (touchLRULocked,
//     slab.SegAllocator.Bump).
//  7. The engine returns a Ref holding the stripe's lock; asciiRetrieve
//     copies key, flags and value straight from the segment into the
//     connection's output with codec.AppendValue (codec/reply.go), then
//     Ref.Release unlocks. "END\r\n" (codec.ReplyEnd) closes the reply.
//  8. Back in OnTraffic: the byte counters are added (step), c.Write
//     queues conn.out once for the whole wake-up, c.Discard drops the
//     consumed input, and gnet writes to the socket.
//
// No step allocates: conn.req, conn.out and conn.in are reused, and item
// memory is never copied to the Go heap.
//
// # A forwarded get (Config.Route set, issue 15)
//
// The same "get k\r\n" on node A when node B owns k (tenancy.Owners):
//
//  1. As steps 1-4 above, up to execASCII's capability check: a denied
//     request is answered here and never forwarded. process has kept
//     the request's bytes as received in conn.raw.
//  2. forward.go, forwardASCII and forwardRetrieve: Owners.Owner(cache,
//     k) names B. newSlot takes a pooled slot, its fail answer set to
//     the miss ("END\r\n"); send pushes it on the connection's queue
//     (conn.push: from now on this connection's local replies go after
//     it) and hands the request to the link A keeps to B on this
//     connection's event loop (peer.go: one gnet client connection per
//     peer and loop).
//  3. peer.go, peerLink.enqueue: under the link's mutex, a request
//     frame (codec/peer.go: seq, cache id, protocol, the raw request) is
//     appended to its pending bytes and the slot to its in-flight ring
//     with a deadline; the link is marked dirty on the loop's loopState,
//     whose trigger (trigger.go) is pulled once per pass. The event loop
//     goes on with the next request: it never waits.
//  4. Once the loop has served every connection ready in its pass, the
//     trigger runs loopState.flush: each dirty link writes the frames of
//     all those connections in one gnet write.
//  5. On B, the peer connection (protoPeer, opened by a hello with the
//     cluster secret) runs the frame in processPeer and execFrame: the
//     request is parsed as a client's and run by execASCII on the
//     frame's cache with every capability, and never forwarded again
//     (conn.relay). Its reply, exactly what a client of B would get,
//     goes back in one reply frame; every frame of a wake-up in one
//     write.
//  6. On A, the same event loop reads the reply frames (OnTraffic,
//     peerLink.traffic), matches each to the oldest in-flight request by
//     seq and copies the reply into its slot (completeHere).
//  7. Once the read is done, writeReady runs OnTraffic for each client
//     connection it completed slots of, unless its last forwarded
//     request is still unanswered: conn.settle moves into conn.out every
//     slot at the head of the queue whose reply has come, each followed
//     by the local replies that came after it, and the ready prefix is
//     written. Slots go back to their pool: nothing is allocated per
//     forwarded request.
//
// A TLS connection, on a goroutine of its own, queues its frames on the
// peer's shared link (on a loop gnet picked), pulls that link's trigger
// to have them written, and is woken on its wakeCh when a reply
// completes one of its slots.
//
// A multi-get over keys of several nodes asks each remote key alone and
// merges in the client's order with one END; flush_all is sent to every
// other node and answered once they all have; a set refused as too large
// goes to the key's owner without its data (forwardRefused), so that the
// owner drops the key's old value, as memcached does; a retrieval with a
// key too long looks up (gat: touches) the keys before it on their
// owners, which counts them and marks hits fetched, then answers the
// error (forwardLookupsBeforeError). A peer that does not
// answer within RouteConfig.Timeout (watchPeers), or cannot be dialled,
// completes its slots with their fail answers (a miss, or a server
// error), counted in forward_errors; its connection is closed, so a late
// reply is dropped, and dialled again in the background. The pool of a
// node that has left the membership is retired (retirePeer).
//
// # A connection's states
//
//	state            what marks it                 how it is entered, and left
//	protocol unknown cs.proto == protoUnknown      opened; left at the first byte (0x80: binary;
//	                                               0xC1 on a routing node: a peer's, protoPeer)
//	peer link        cs.proto == protoPeer          another node's forwarded requests: cs.exec set
//	                                               once its hello carried the cluster secret (a
//	                                               wrong one closes it); exempt from the login
//	                                               and idle timeouts (cs.peerLink)
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
//	awaiting owners  cs.queue.n > 0                requests were forwarded and their replies have
//	                                               not all come: later replies wait behind them;
//	                                               left as settle writes them (each comes, or
//	                                               fails, within the forward timeout); over
//	                                               maxPending pending, requests are held
//	closing after    cs.closeAfter                 a request that closes the connection (quit)
//	forwarded                                      came while replies were awaited: nothing more
//	                                               runs, and it closes once they are written
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
// counts, and sync.Map (Server.conns) takes none of the above. So are
// routing's: peerTable.mu (the map of peers; watchPeers holds it for
// reading while it takes each peerLink.mu), peerTable.loopsMu (the
// loops seen), triggers.mu, and peerLink.mu (one link's pending frames
// and in-flight ring). Completing a slot under peerLink.mu takes no lock
// of ours: it stores the reply, queues a gnet wake or sends on a
// buffered channel. Nothing writes to a socket under peerLink.mu: gnet
// may close the connection inside the write and run OnClose, which
// takes it.
//
// Clocks, counters, a connection's shared fields (sharedTenant,
// sharedUser, loginCert, held, closing, wakeQueued, peerLink), a
// slot's state and holds, and a trigger's queued flag and write end are
// atomics read without locks.
package server
