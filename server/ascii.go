package server

import (
	"github.com/memhive/memhive/codec"
	"github.com/memhive/memhive/engine"
)

var storeModes = [...]engine.Mode{
	codec.CmdSet:     engine.ModeSet,
	codec.CmdAdd:     engine.ModeAdd,
	codec.CmdReplace: engine.ModeReplace,
	codec.CmdAppend:  engine.ModeAppend,
	codec.CmdPrepend: engine.ModePrepend,
	codec.CmdCas:     engine.ModeCAS,
}

var storeReplies = [...]string{
	engine.Stored:    codec.ReplyStored,
	engine.NotStored: codec.ReplyNotStored,
	engine.Exists:    codec.ReplyExists,
	engine.NotFound:  codec.ReplyNotFound,
	engine.TooLarge:  codec.ReplyTooLarge,
	engine.NoMemory:  codec.ReplyOutOfMemoryStore,
}

// execASCII runs one parsed text request, appending its reply to cs.out.
// It reports whether the connection must close.
func (s *Server) execASCII(cs *conn, r *codec.Request) (closeConn bool) {
	out := cs.out
	eng := cs.tenant.Engine()
	if caps := cs.caps(); !caps.Unrestricted() && denied(caps, r.Cmd) {
		if r.Cmd == codec.CmdFlushAll {
			out = append(out, codec.ReplyFlushDenied...)
		} else if !r.NoReply {
			out = append(out, codec.ReplyNotStored...)
		}
		cs.out = out
		return false
	}
	if s.routing(cs) {
		if s.forwardASCII(cs, r) {
			return false
		}
		// A flush_all sent to the other nodes queued their replies.
		out = cs.out
	}
	switch r.Cmd {
	case codec.CmdGet, codec.CmdGets, codec.CmdGat, codec.CmdGats:
		out = asciiRetrieve(eng, out, r, s.replyBudget)
	case codec.CmdSet, codec.CmdAdd, codec.CmdReplace, codec.CmdAppend, codec.CmdPrepend, codec.CmdCas:
		st, _ := eng.Store(storeModes[r.Cmd], r.Key, r.Flags, r.Exptime, r.Value, r.CAS)
		if st == engine.TooLarge {
			cs.stats.StoreTooLarge.Add(1)
		}
		if !r.NoReply {
			out = append(out, storeReplies[st]...)
		}
	case codec.CmdTouch:
		st := eng.Touch(r.Key, r.Exptime)
		if !r.NoReply {
			if st == engine.Touched {
				out = append(out, codec.ReplyTouched...)
			} else {
				out = append(out, codec.ReplyNotFound...)
			}
		}
	case codec.CmdDelete:
		st := eng.Delete(r.Key, 0)
		if !r.NoReply {
			if st == engine.Deleted {
				out = append(out, codec.ReplyDeleted...)
			} else {
				out = append(out, codec.ReplyNotFound...)
			}
		}
	case codec.CmdIncr, codec.CmdDecr:
		st, res := eng.Delta(r.Key, engine.DeltaOptions{ParseValue: codec.SafeStrtoull, Incr: r.Cmd == codec.CmdIncr, Delta: r.Delta})
		if !r.NoReply {
			switch st {
			case engine.OK:
				out = codec.AppendUint(out, res.Value)
			case engine.NotFound:
				out = append(out, codec.ReplyNotFound...)
			case engine.NonNumeric:
				out = append(out, codec.ReplyNonNumeric...)
			default:
				out = append(out, codec.ReplyOutOfMemoryDelta...)
			}
		}
	case codec.CmdFlushAll:
		eng.FlushAll(r.Exptime)
		if !r.NoReply {
			out = append(out, codec.ReplyOK...)
		}
	case codec.CmdStats:
		out = s.asciiStats(cs, out, r.Keys)
	case codec.CmdVersion:
		out = codec.AppendVersion(out, Version)
	case codec.CmdVerbosity:
		// The log level is the process's: in SASL mode one tenant may not
		// change what every other sees, so the command only answers.
		if s.tenants.Local() {
			s.verbosity.Store(int32(r.Delta))
		}
		if !r.NoReply {
			out = append(out, codec.ReplyOK...)
		}
	case codec.CmdQuit:
		closeConn = true
	case codec.CmdError:
		out = append(out, r.ErrReply...)
		cs.swallow = r.Swallow
		s.refused(cs, r)
		if r.BadData && cs.caps().CanWrite() {
			// memcached counts it in cmd_set (see codec.Request.BadData);
			// without write capability a store counts nothing.
			eng.CountBadSet(r.Key, len(r.Value))
		}
		if r.BadFlush && cs.caps().CanFlush() {
			// memcached counts it in cmd_flush (see codec.Request.BadFlush);
			// without flush capability a flush_all counts nothing.
			eng.CountFlush()
		}
		closeConn = r.Close
	case codec.CmdMetaGet, codec.CmdMetaSet, codec.CmdMetaDelete, codec.CmdMetaArith,
		codec.CmdMetaNoop, codec.CmdMetaDebug:
		cs.out = out
		s.execMeta(cs, r)
		out = cs.out
	case codec.CmdAdmin:
		// memcached's operator commands (slabs, lru_crawler, watch, ...)
		// drive machinery memhive does not have.
		out = append(out, codec.ReplyError...)
	default:
		out = append(out, codec.ReplyError...)
	}
	cs.out = out
	return closeConn
}

// refused handles a storage command the parser refused as too large:
// memcached counts it (text protocol) and, for a set, drops the key's old
// value so that a stale value does not outlive a failed write.
func (s *Server) refused(cs *conn, r *codec.Request) {
	if r.Refused == codec.CmdNone {
		return
	}
	if !r.Binary {
		cs.stats.StoreTooLarge.Add(1)
	}
	if (r.Refused == codec.CmdSet || r.Refused == codec.CmdMetaSet) && cs.caps().CanWrite() {
		cs.tenant.Engine().Unlink(r.Key)
	}
}

// asciiRetrieve answers get, gets, gat and gats. When the request carries
// an error (a key too long among the keys), memcached drops the values it
// had gathered and answers only the error; the lookups still count.
//
// A reply that has reached budget bytes takes no more values: the keys
// left are answered as misses, which a cache may always answer. memcached
// sends values from item memory without copying; memhive copies them into
// the connection's output, so a multi-get of many large items must not
// make that copy as large as the items.
func asciiRetrieve(eng *engine.Engine, out []byte, r *codec.Request, budget int) []byte {
	touch := r.Cmd == codec.CmdGat || r.Cmd == codec.CmdGats
	withCAS := r.Cmd == codec.CmdGets || r.Cmd == codec.CmdGats
	mark := len(out)
	for _, key := range r.Keys {
		if len(out)-mark >= budget {
			break
		}
		out = retrieveOne(eng, out, key, touch, withCAS, r.Exptime)
	}
	if len(r.ErrReply) > 0 {
		return append(out[:mark], r.ErrReply...)
	}
	return append(out, codec.ReplyEnd...)
}

// lookupOne looks key up for a retrieval: a get's lookup, or with touch
// a gat's (which also sets the expiry), each counted as memcached counts
// it. On a hit the Ref holds its stripe's lock until Release.
func lookupOne(eng *engine.Engine, key []byte, touch bool, exptime int64) (engine.Ref, bool) {
	if touch {
		return eng.GetAndTouch(key, exptime)
	}
	return eng.Get(key)
}

// retrieveOne appends one key's part of a text retrieval reply: its
// VALUE, or nothing for a miss.
func retrieveOne(eng *engine.Engine, out []byte, key []byte, touch, withCAS bool, exptime int64) []byte {
	ref, ok := lookupOne(eng, key, touch, exptime)
	if !ok {
		return out
	}
	out = codec.AppendValue(out, ref.Key(), ref.Flags(), ref.Value(), ref.CAS(), withCAS)
	ref.Release()
	return out
}
