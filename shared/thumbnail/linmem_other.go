//go:build !unix

package thumbnail

import "github.com/tetratelabs/wazero/experimental"

// newLinearMemoryAllocator keeps a module's linear memory in the Go heap
// (where there is no mmap), up to limit bytes.
func newLinearMemoryAllocator(limit uint64) experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(_, maxBytes uint64) experimental.LinearMemory {
		return &heapMemory{limit: min(limit, maxBytes)}
	})
}
