//go:build !linux && !race

package arena

import "errors"

// bindSpans is unsupported outside Linux; sysfs NUMA trees exist only there,
// so New never gets a plan to apply.
func bindSpans(region []byte, spans []span) error { return errors.ErrUnsupported }

// unbind has nothing to undo outside Linux.
func unbind(region []byte) error { return nil }
