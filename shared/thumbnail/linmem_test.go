package thumbnail

import "testing"

func TestHeapMemory(t *testing.T) {
	m := &heapMemory{limit: 1 << 20}
	b := m.Reallocate(3 << 16)
	if len(b) != 3<<16 {
		t.Fatalf("len %d", len(b))
	}
	b[0], b[len(b)-1] = 1, 2
	b = m.Reallocate(10 << 16) // grows: contents kept
	if len(b) != 10<<16 || b[0] != 1 || b[3<<16-1] != 2 {
		t.Fatalf("after growing: len %d, contents lost", len(b))
	}
	if m.Reallocate(1<<20+1) != nil {
		t.Error("grew past its limit")
	}
	if b := m.Reallocate(1 << 20); len(b) != 1<<20 || b[0] != 1 {
		t.Error("cannot grow to its limit")
	}
	m.Free()
}

func TestLinearMemoryAllocator(t *testing.T) {
	lm := newLinearMemoryAllocator(1<<20).Allocate(0, 4<<30)
	b := lm.Reallocate(1 << 16)
	b[100] = 7
	if b := lm.Reallocate(1 << 20); len(b) != 1<<20 || b[100] != 7 {
		t.Fatal("cannot grow to its limit, or lost contents")
	}
	if lm.Reallocate(1<<20+1) != nil {
		t.Error("grew past its limit")
	}
	lm.Free()
	lm.Free() // twice: harmless
}
