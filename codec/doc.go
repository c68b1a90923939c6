// Package codec parses memcached ASCII and binary requests and encodes
// their replies, byte for byte as Debian's memcached 1.6.18 does.
//
// The package does no I/O and knows nothing of the engine. A connection
// hands its buffered input to [Parser.ParseASCII] or [Parser.ParseBinary]
// (pick with [IsBinary] on a connection's first byte, as memcached does, and
// keep that choice for the connection's life). The parser fills a
// caller-owned [Request] whose byte slices alias the input, and reports how
// many bytes the request used; [ErrIncomplete] with n == 0 means "wait for
// more bytes". The caller executes the request and appends the reply with
// the Append* encoders, which never allocate beyond growing dst.
//
// # What the caller does with each result
//
//   - err == ErrIncomplete: nothing was used; read more and parse again from
//     the same place.
//   - Cmd != CmdError: execute; then discard n bytes.
//   - Cmd == CmdError: write ErrReply (ASCII; it may be empty, which means
//     memcached writes nothing) or, when Status != 0, the binary status reply
//     [AppendBinaryStatus](Opcode, Status, Opaque); discard n bytes, then
//     discard Swallow more bytes as they arrive (they may not be buffered
//     yet); if Close, close the connection after writing; if Abort, close at
//     once, dropping replies not yet written (memcached's conn_closing).
//   - Cmd is a retrieval with ErrReply != nil (ASCII multi-get with a key
//     longer than 250 bytes): look up Keys (they count in stats and gat
//     touches them), but write only ErrReply: memcached throws away every
//     reply it has not yet sent on the connection (conn_release_items),
//     which includes this command's VALUE lines and the replies of earlier
//     pipelined commands queued since it last wrote (see Request.Flush).
//
// Replies must reach the client in the same bytes as memcached's, and
// memcached's only observable timing effect is which queued replies an
// Abort or a multi-get key error discards: Request.Flush marks the
// requests after which memcached has written everything queued.
//
// # Where memcached's behaviour depends on timing
//
// memcached reads into a 16 KiB buffer and decides some things on what that
// buffer holds; the parser decides the same things on what buf holds:
//
//   - A text line with no "\n" among the first 16384 buffered bytes while
//     more than 2048 bytes are buffered closes the connection, unless the
//     line starts (after at most 100 spaces) with "get " or "gets ", whose
//     lines may be any length (memcached grows its buffer for them).
//   - A binary header whose header+extras+key exceed 16384 bytes can never
//     be read by memcached: it closes once more than 16384 bytes are
//     buffered.
//
// # Keys
//
// The text protocol splits only on ' ' and ends a line at "\n" (dropping one
// "\r" before it) and at the first NUL byte, so a text key is 1..250 bytes
// holding anything except ' ', '\n' and NUL: memcached 1.6.18 stores keys
// with tabs or other control characters, and so do we. Binary keys are any
// 1..250 bytes.
package codec
