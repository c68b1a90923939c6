package slab

import (
	"testing"
)

const testPage = 64 * 1024

func TestClassesAreAlignmentMultiples(t *testing.T) {
	for _, line := range []int{32, 64, 128} {
		c, err := NewClasses(1<<20+128, line, 1.25)
		if err != nil {
			t.Fatal(err)
		}
		prev := 0
		for i, s := range c.Sizes {
			if s%line != 0 || s <= prev {
				t.Fatalf("line %d: class %d size %d (previous %d)", line, i, s, prev)
			}
			if c.PerPage[i] < 1 {
				t.Fatalf("class %d fits no chunk in a page", i)
			}
			prev = s
		}
		if last := c.Sizes[len(c.Sizes)-1]; last != 1<<20+128 {
			t.Fatalf("largest class %d is not the page", last)
		}
	}
	if _, err := NewClasses(testPage, 64, 1.0); err == nil {
		t.Fatal("factor 1.0 accepted")
	}
}

func TestClassFor(t *testing.T) {
	c, _ := NewClasses(testPage, 64, 2)
	for _, n := range []int{1, 63, 64, 65, 1000, testPage} {
		id := c.ClassFor(n)
		if id < 0 || c.Sizes[id] < n || (id > 0 && c.Sizes[id-1] >= n) {
			t.Fatalf("ClassFor(%d) = %d", n, id)
		}
	}
	if c.ClassFor(testPage+1) != -1 {
		t.Fatal("oversized item got a class")
	}
}
