//go:build unix

package thumbnail

import (
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

// newLinearMemoryAllocator backs a module's linear memory with an anonymous
// mapping of limit bytes reserved up front (MAP_NORESERVE: pages cost memory
// only once written), so growing it never moves or copies it, it is not in
// the Go heap (no garbage, nothing for the GC to pace on), and it is
// returned to the system when the module is closed. Growing past limit
// fails, as running out of memory does in the module.
func newLinearMemoryAllocator(limit uint64) experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(_, maxBytes uint64) experimental.LinearMemory {
		size := min(limit, maxBytes)
		buf, err := syscall.Mmap(-1, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE,
			syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
		if err != nil {
			return &heapMemory{limit: size}
		}
		return &mappedMemory{buf: buf}
	})
}

type mappedMemory struct{ buf []byte }

func (m *mappedMemory) Reallocate(size uint64) []byte {
	if m.buf == nil || size > uint64(len(m.buf)) {
		return nil
	}
	return m.buf[:size]
}

func (m *mappedMemory) Free() {
	if m.buf != nil {
		_ = syscall.Munmap(m.buf)
		m.buf = nil
	}
}
