package thumbnail

// heapMemory is a linear memory in the Go heap, grown by doubling (fewer
// copies than wazero's own append), up to limit bytes.
type heapMemory struct {
	buf   []byte
	limit uint64
}

func (m *heapMemory) Reallocate(size uint64) []byte {
	if size > m.limit {
		return nil
	}
	if size > uint64(cap(m.buf)) {
		buf := make([]byte, size, min(max(size, 2*uint64(cap(m.buf))), m.limit))
		copy(buf, m.buf)
		m.buf = buf
	}
	m.buf = m.buf[:size]
	return m.buf
}

func (m *heapMemory) Free() { m.buf = nil }
