package arena

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestFileArenaKeepsItsPagesAcrossMappings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "memory")
	const pageSize, pages = 1 << 16, 4
	a, err := NewFile(path, pages*pageSize, pageSize)
	if err != nil {
		t.Fatal(err)
	}
	for p := range pages {
		copy(a.Mem()[p*pageSize:], bytes.Repeat([]byte{byte('a' + p)}, pageSize))
	}
	a.Release(1)
	if err := a.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a, err = NewFile(path, pages*pageSize, pageSize)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for p, want := range []byte{'a', 0, 'c', 'd'} {
		page := a.Mem()[p*pageSize : (p+1)*pageSize]
		if !bytes.Equal(page, bytes.Repeat([]byte{want}, pageSize)) {
			t.Fatalf("page %d after a new mapping: starts %q, want all %q", p, page[:8], want)
		}
	}
	if err := a.Wipe(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Mem(), make([]byte, pages*pageSize)) {
		t.Fatal("Wipe left bytes in the arena")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != pages*pageSize || !bytes.Equal(raw, make([]byte, len(raw))) {
		t.Fatalf("Wipe left %d bytes in the file, not all zero", len(raw))
	}
}
