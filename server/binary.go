package server

import (
	"github.com/memhive/memhive/codec"
	"github.com/memhive/memhive/engine"
)

// binaryNoExpiry in an incr/decr request's expiration means "do not create
// a missing counter".
const binaryNoExpiry = 0xffffffff

// execBinary runs one parsed binary request, appending its reply to cs.out.
// It reports whether the connection must close.
func (s *Server) execBinary(cs *conn, r *codec.Request) (closeConn bool) {
	if isSASL(r.Cmd) {
		// The only commands an unauthenticated connection may send.
		cs.out = s.binarySASL(cs, cs.out, r)
		return false
	}
	out := cs.out
	op, opaque := r.Opcode, r.Opaque
	eng := cs.tenant.Engine()
	if caps := cs.caps(); !caps.Unrestricted() && denied(caps, r.Cmd) {
		if r.Cmd == codec.CmdFlushAll {
			out = codec.AppendBinaryError(out, op, codec.StatusAuthError, opaque, codec.BinaryFlushDenied)
		} else {
			out = codec.AppendBinaryStatus(out, op, codec.StatusNotStored, opaque)
		}
		cs.out = out
		return false
	}
	if s.routing(cs) {
		if s.forwardBinary(cs, r) {
			return false
		}
		// A FLUSH sent to the other nodes queued their replies.
		out = cs.out
	}
	switch r.Cmd {
	case codec.CmdGet, codec.CmdGets:
		out = binaryGet(eng, out, r, false)
	case codec.CmdGat, codec.CmdGats, codec.CmdTouch:
		out = binaryGet(eng, out, r, true)
	case codec.CmdSet, codec.CmdAdd, codec.CmdReplace, codec.CmdAppend, codec.CmdPrepend, codec.CmdCas:
		out = s.binaryStore(cs, out, r)
	case codec.CmdDelete:
		switch eng.Delete(r.Key, r.CAS) {
		case engine.Deleted:
			if !r.Quiet {
				out = codec.AppendBinaryOK(out, op, opaque, 0)
			}
		case engine.Exists:
			out = codec.AppendBinaryStatus(out, op, codec.StatusKeyExists, opaque)
		default:
			out = codec.AppendBinaryStatus(out, op, codec.StatusKeyNotFound, opaque)
		}
	case codec.CmdIncr, codec.CmdDecr:
		st, res := eng.Delta(r.Key, engine.DeltaOptions{
			Incr: r.Cmd == codec.CmdIncr, Delta: r.Delta, CAS: r.CAS,
			Create: r.Exptime != binaryNoExpiry, Initial: r.Initial, Exptime: r.Exptime,
			ParseValue: codec.SafeStrtoull,
		})
		switch st {
		case engine.OK:
			if !r.Quiet {
				out = codec.AppendBinaryCounter(out, op, opaque, res.CAS, res.Value)
			}
		case engine.NotFound:
			out = codec.AppendBinaryStatus(out, op, codec.StatusKeyNotFound, opaque)
		case engine.Exists:
			out = codec.AppendBinaryStatus(out, op, codec.StatusKeyExists, opaque)
		case engine.NonNumeric:
			out = codec.AppendBinaryStatus(out, op, codec.StatusNonNumeric, opaque)
		case engine.NotStored:
			out = codec.AppendBinaryStatus(out, op, codec.StatusNotStored, opaque)
		default:
			out = codec.AppendBinaryStatus(out, op, codec.StatusOutOfMemory, opaque)
		}
	case codec.CmdFlushAll:
		eng.FlushAll(r.Exptime)
		if !r.Quiet {
			out = codec.AppendBinaryOK(out, op, opaque, 0)
		}
	case codec.CmdNoop:
		out = codec.AppendBinaryOK(out, op, opaque, 0)
	case codec.CmdVersion:
		out = codec.AppendBinaryValue(out, op, codec.StatusOK, opaque, 0, []byte(Version))
	case codec.CmdQuit:
		if !r.Quiet {
			out = codec.AppendBinaryOK(out, op, opaque, 0)
		}
		closeConn = true
	case codec.CmdStats:
		out = s.binaryStats(cs, out, r)
	case codec.CmdError:
		if r.Status != 0 {
			out = codec.AppendBinaryStatus(out, op, r.Status, opaque)
		}
		cs.swallow = r.Swallow
		s.refused(cs, r)
		closeConn = r.Close
	default:
		out = codec.AppendBinaryStatus(out, op, codec.StatusUnknownCommand, opaque)
	}
	cs.out = out
	return closeConn
}

// binaryGet answers GET(Q)(K), GAT(Q)(K) and TOUCH. TOUCH answers only
// the flags; the K variants carry the key, also on a miss.
func binaryGet(eng *engine.Engine, out []byte, r *codec.Request, touch bool) []byte {
	var ref engine.Ref
	var ok bool
	if touch {
		ref, ok = eng.GetAndTouch(r.Key, r.Exptime)
	} else {
		ref, ok = eng.Get(r.Key)
	}
	if ok {
		var key, value []byte
		if r.WithKey {
			key = ref.Key()
		}
		if r.Cmd != codec.CmdTouch {
			value = ref.Value()
		}
		out = codec.AppendBinaryGet(out, r.Opcode, r.Opaque, ref.CAS(), ref.Flags(), key, value)
		ref.Release()
		return out
	}
	if r.Quiet {
		return out
	}
	if r.WithKey {
		return codec.AppendBinaryMiss(out, r.Opcode, r.Opaque, r.Key)
	}
	return codec.AppendBinaryStatus(out, r.Opcode, codec.StatusKeyNotFound, r.Opaque)
}

// binaryStore answers SET, ADD, REPLACE, APPEND, PREPEND and their quiet
// forms. A set, add or replace carrying a CAS is a compare-and-swap.
func (s *Server) binaryStore(cs *conn, out []byte, r *codec.Request) []byte {
	mode := storeModes[r.Cmd]
	if r.CAS != 0 && (mode == engine.ModeSet || mode == engine.ModeAdd || mode == engine.ModeReplace) {
		mode = engine.ModeCAS
	}
	st, cas := cs.tenant.Engine().Store(mode, r.Key, r.Flags, r.Exptime, r.Value, r.CAS)
	op, opaque := r.Opcode, r.Opaque
	switch st {
	case engine.Stored:
		if !r.Quiet {
			out = codec.AppendBinaryOK(out, op, opaque, cas)
		}
	case engine.Exists:
		out = codec.AppendBinaryStatus(out, op, codec.StatusKeyExists, opaque)
	case engine.NotFound:
		out = codec.AppendBinaryStatus(out, op, codec.StatusKeyNotFound, opaque)
	case engine.NoMemory:
		out = codec.AppendBinaryError(out, op, codec.StatusOutOfMemory, opaque, codec.BinaryOutOfMemoryStore)
	case engine.TooLarge: // an append or prepend that would reach the limit
		// Not counted in store_too_large: memcached's binary protocol
		// counts no refusal there.
		out = codec.AppendBinaryStatus(out, op, codec.StatusTooLarge, opaque)
	default: // NotStored
		switch mode {
		case engine.ModeAdd:
			out = codec.AppendBinaryStatus(out, op, codec.StatusKeyExists, opaque)
		case engine.ModeReplace:
			out = codec.AppendBinaryStatus(out, op, codec.StatusKeyNotFound, opaque)
		default:
			out = codec.AppendBinaryStatus(out, op, codec.StatusNotStored, opaque)
		}
	}
	return out
}
