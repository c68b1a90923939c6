package server

import (
	"encoding/base64"
	"strconv"

	"github.com/memhive/memhive/codec"
	"github.com/memhive/memhive/engine"
)

// The meta commands, answered as memcached 1.6.18's proto_text.c does:
// the return flags in the order the client wrote them, O and k echoed,
// q suppressing the nominal answers (HD, and EN for mg).

// metaStoreModes maps ms's M argument to a storage mode.
var metaStoreModes = [256]engine.Mode{
	0: engine.ModeSet, 'S': engine.ModeSet, 'E': engine.ModeAdd, 'A': engine.ModeAppend,
	'P': engine.ModePrepend, 'R': engine.ModeReplace,
}

// metaCodes are the meta status codes of the engine's outcomes; HD is the
// nominal one, which q suppresses.
var metaCodes = [...]string{
	engine.Stored: codec.MetaHD, engine.Deleted: codec.MetaHD, engine.Exists: codec.MetaEX,
	engine.NotFound: codec.MetaNF, engine.NotStored: codec.MetaNS,
}

// execMeta runs one meta command, appending its answer to cs.out.
func (s *Server) execMeta(cs *conn, r *codec.Request) {
	m := r.Meta()
	if !cs.caps().CanWrite() && metaWrites(r, m) {
		// As NOT_STORED for the classic commands: nothing changes, and
		// the O and k flags still let a pipelining client match it.
		cs.out = appendEcho(append(cs.out, codec.MetaNS...), r, m)
		cs.out = append(cs.out, "\r\n"...)
		return
	}
	if s.routing(cs) && s.forwardMeta(cs, r, m) {
		return
	}
	switch r.Cmd {
	case codec.CmdMetaGet:
		cs.out = metaGet(cs.tenant.Engine(), cs.out, r, m)
	case codec.CmdMetaSet:
		cs.out = metaSet(cs, cs.out, r, m)
	case codec.CmdMetaDelete:
		cs.out = metaDelete(cs.tenant.Engine(), cs.out, r, m)
	case codec.CmdMetaArith:
		cs.out = metaArith(cs.tenant.Engine(), cs.out, r, m)
	case codec.CmdMetaNoop:
		cs.out = append(cs.out, codec.ReplyMetaNoop...)
	case codec.CmdMetaDebug:
		cs.stats.MetaCmds.Add(1)
		cs.out = metaDebug(cs.tenant.Engine(), cs.out, r)
	}
}

// metaWrites reports whether a meta command changes the cache: ms, md,
// ma, and mg with T (a new expiry) or N (creating the item).
func metaWrites(r *codec.Request, m *codec.Meta) bool {
	switch r.Cmd {
	case codec.CmdMetaSet, codec.CmdMetaDelete, codec.CmdMetaArith:
		return true
	case codec.CmdMetaGet:
		return m.NewTTL || m.Vivify
	}
	return false
}

// appendEcho appends the O and k flags of a request, for answers that
// carry no item (misses, failures): the key as the request gave it.
func appendEcho(out []byte, r *codec.Request, m *codec.Meta) []byte {
	for _, tok := range m.Tokens[:m.NTok] {
		switch tok[0] {
		case 'O':
			out = append(append(out, ' '), tok...)
		case 'k':
			out = codec.AppendMetaKey(out, r.Key, m.Base64)
		}
	}
	return out
}

// appendU32 appends " <flag><n>" with n printed as memcached's itoa_u32
// does: differences of 32-bit server times, unsigned.
func appendU32(out []byte, flag byte, n uint32) []byte {
	return strconv.AppendUint(append(out, ' ', flag), uint64(n), 10)
}

func metaGet(eng *engine.Engine, out []byte, r *codec.Request, m *codec.Meta) []byte {
	ref, hit, created := eng.MetaGet(r.Key, m.Vivify)
	if !hit {
		if m.OpaqueTooLong {
			return append(out, codec.ReplyOpaqueTooLong...)
		}
		if r.NoReply {
			return out
		}
		out = appendEcho(append(out, codec.MetaEN...), r, m)
		return append(out, "\r\n"...)
	}
	mark := len(out)
	value := ref.Value()
	if m.Value {
		out = strconv.AppendInt(append(out, codec.MetaVA...), int64(len(value)), 10)
	} else {
		out = append(out, codec.MetaHD...)
	}
	won, locked := false, false
	for _, tok := range m.Tokens[:m.NTok] {
		switch tok[0] {
		case 'N', 'T', 'R', 'l', 'h':
			// With any of these memcached looks the item up locked and
			// bumps it after answering (not at all if the answer fails).
			locked = true
		}
	}
	for _, tok := range m.Tokens[:m.NTok] {
		switch tok[0] {
		case 'T':
			ref.SetTTL(r.Exptime)
		case 'N':
			if created {
				ref.SetTTL(m.Vivified)
				won = true
			}
		case 'R':
			if !ref.TokenSent() && !created && ref.ExpiresBefore(m.RecacheT) {
				won = true
			}
		case 's':
			out = appendU32(out, 's', uint32(len(value)))
		case 't':
			exp, now := ref.Expiry()
			out = appendTTL(out, exp, now)
		case 'c':
			out = strconv.AppendUint(append(out, " c"...), ref.CAS(), 10)
		case 'f':
			out = appendU32(out, 'f', ref.Flags())
		case 'l':
			out = appendU32(out, 'l', uint32(ref.Idle()))
		case 'h':
			if ref.Fetched() {
				out = append(out, " h1"...)
			} else {
				out = append(out, " h0"...)
			}
		case 'O':
			if len(tok) > codec.MaxOpaqueLen {
				// memcached stops at this flag with an error: no token
				// is handed out, and a locked item is not bumped.
				if !locked && !m.NoBump {
					ref.Bump()
				}
				ref.Release()
				return append(out[:mark], codec.ReplyOpaqueTooLong...)
			}
			out = append(append(out, ' '), tok...)
		case 'k':
			out = codec.AppendMetaKey(out, ref.Key(), ref.KeyBinary())
		}
	}
	// Z before W, so that one answer never carries both.
	if ref.TokenSent() {
		out = append(out, " Z"...)
	}
	if ref.Stale() {
		out = append(out, " X"...)
		if !ref.TokenSent() {
			won = true
		}
	}
	if won {
		out = append(out, " W"...)
		ref.SendToken()
	}
	out = append(out, "\r\n"...)
	if m.Value {
		out = append(append(out, value...), "\r\n"...)
	}
	ref.CountMetaHit(m.NewTTL)
	if !m.NoBump {
		ref.Bump()
	}
	ref.Release()
	return out
}

// appendTTL appends " t<seconds left>" for an item expiring at server
// time exp (unsigned, as memcached computes it), or " t-1" for none.
func appendTTL(out []byte, exp, now uint32) []byte {
	if exp == 0 {
		return append(out, " t-1"...)
	}
	return appendU32(out, 't', exp-now)
}

func metaSet(cs *conn, out []byte, r *codec.Request, m *codec.Meta) []byte {
	mode := metaStoreModes[m.Mode]
	var cas uint64
	if m.HasCAS {
		cas = r.CAS
		if mode == engine.ModeSet || mode == engine.ModeReplace {
			mode = engine.ModeCAS
		}
	}
	st, newCAS := cs.tenant.Engine().StoreMeta(mode, r.Key, r.Flags, r.Exptime, r.Value, cas, engine.StoreOptions{
		Stale:     m.Stale && mode == engine.ModeCAS,
		KeyBinary: m.Base64,
		SetCAS:    m.SetCAS,
		CASValue:  m.CASValue,
	})
	switch st {
	case engine.Stored:
		if r.NoReply {
			return out
		}
	case engine.TooLarge:
		cs.stats.StoreTooLarge.Add(1)
		return append(out, codec.ReplyTooLarge...)
	case engine.NoMemory:
		return append(out, codec.ReplyOutOfMemoryStore...)
	}
	out = append(out, metaCodes[st]...)
	for _, tok := range m.Tokens[:m.NTok] {
		switch tok[0] {
		case 'O':
			out = append(append(out, ' '), tok...)
		case 'k':
			out = codec.AppendMetaKey(out, r.Key, m.Base64)
		case 'c':
			out = strconv.AppendUint(append(out, " c"...), newCAS, 10)
		}
	}
	return append(out, "\r\n"...)
}

func metaDelete(eng *engine.Engine, out []byte, r *codec.Request, m *codec.Meta) []byte {
	st := eng.MetaDelete(r.Key, engine.MetaDeleteOptions{
		HasCAS: m.HasCAS, CAS: r.CAS, Invalidate: m.Stale, NewTTL: m.NewTTL, Exptime: r.Exptime,
	})
	if st == engine.Deleted && r.NoReply {
		return out
	}
	return append(appendEcho(append(out, metaCodes[st]...), r, m), "\r\n"...)
}

func metaArith(eng *engine.Engine, out []byte, r *codec.Request, m *codec.Meta) []byte {
	incr := m.Mode != 'D' && m.Mode != '-'
	var cas uint64
	if m.HasCAS {
		cas = r.CAS
	}
	// N's expiry is set below, in the order of the flags.
	st, res := eng.MetaDelta(r.Key, engine.DeltaOptions{ParseValue: codec.SafeStrtoull, Incr: incr, Delta: r.Delta, CAS: cas, Create: m.Vivify, Initial: r.Initial})
	ref := res.Ref
	switch st {
	case engine.OK:
	case engine.NonNumeric:
		return append(out, codec.ReplyNonNumeric...)
	case engine.NotFound, engine.Exists:
		if m.OpaqueTooLong {
			return append(out, codec.ReplyOpaqueTooLong...)
		}
		return append(appendEcho(append(out, metaCodes[st]...), r, m), "\r\n"...)
	case engine.NoMemory:
		if m.Vivify {
			return append(out, codec.ReplyOutOfMemoryVivify...)
		}
		return append(out, codec.ReplyOutOfMemoryDelta...)
	default:
		return append(out, codec.ReplyOutOfMemoryDelta...)
	}
	// After a replacement memcached's T changes the detached old item:
	// what t reports, not what is stored.
	exp, now := ref.Expiry()
	mark := len(out)
	var digits [20]byte
	value := strconv.AppendUint(digits[:0], res.Value, 10)
	if m.Value {
		out = strconv.AppendInt(append(out, codec.MetaVA...), int64(len(value)), 10)
	} else {
		out = append(out, codec.MetaHD...)
	}
	for _, tok := range m.Tokens[:m.NTok] {
		switch tok[0] {
		case 'c':
			out = strconv.AppendUint(append(out, " c"...), ref.CAS(), 10)
		case 't':
			out = appendTTL(out, exp, now)
		case 'T':
			exp = ref.ServerTime(r.Exptime)
			if !res.Replaced {
				ref.SetTTL(r.Exptime)
			}
		case 'N':
			if res.Created {
				exp = ref.ServerTime(m.Vivified)
				ref.SetTTL(m.Vivified)
			}
		case 'O':
			if len(tok) > codec.MaxOpaqueLen {
				// memcached stops at this flag: the flags after it do
				// nothing.
				ref.Release()
				return append(out[:mark], codec.ReplyOpaqueTooLong...)
			}
			out = append(append(out, ' '), tok...)
		case 'k':
			out = codec.AppendMetaKey(out, r.Key, m.Base64)
		}
	}
	ref.Release()
	if r.NoReply && !res.Created {
		// memcached suppresses only the answer of an incr or decr done;
		// one that created the item answers, q or not.
		return out[:mark]
	}
	if m.Value {
		out = append(append(append(out, "\r\n"...), value...), "\r\n"...)
		return out
	}
	return append(out, "\r\n"...)
}

// metaDebug answers me: the item's expiry, last access, CAS, fetched bit,
// class and size, without counting or bumping anything.
func metaDebug(eng *engine.Engine, out []byte, r *codec.Request) []byte {
	ref, ok := eng.Peek(r.Key)
	if !ok {
		return append(out, codec.ReplyMetaMiss...)
	}
	out = append(out, codec.MetaME...)
	if ref.KeyBinary() {
		out = base64.StdEncoding.AppendEncode(out, ref.Key())
	} else {
		out = append(out, ref.Key()...)
	}
	out = append(out, " exp="...)
	if exp, now := ref.Expiry(); exp == 0 {
		out = append(out, "-1"...)
	} else {
		// memcached prints current_time - exptime as an int: minus the
		// time left.
		out = strconv.AppendInt(out, int64(int32(now-exp)), 10)
	}
	out = strconv.AppendUint(append(out, " la="...), uint64(uint32(ref.Idle())), 10)
	out = strconv.AppendUint(append(out, " cas="...), ref.CAS(), 10)
	if ref.Fetched() {
		out = append(out, " fetch=yes"...)
	} else {
		out = append(out, " fetch=no"...)
	}
	class, size := ref.ClassSize()
	out = strconv.AppendInt(append(out, " cls="...), int64(class), 10)
	out = strconv.AppendInt(append(out, " size="...), int64(size), 10)
	ref.Release()
	return append(out, "\r\n"...)
}
