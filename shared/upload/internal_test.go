package upload

import (
	"context"
	"strings"
	"testing"
)

func TestExpectedPartSize(t *testing.T) {
	const ps = 5 << 20
	tests := []struct {
		size int64
		n    int
		want int64
	}{
		{1, 1, 1},
		{ps, 1, ps},
		{ps + 1, 1, ps},
		{ps + 1, 2, 1},
		{2 * ps, 2, ps},
		{12 << 20, 1, ps},
		{12 << 20, 2, ps},
		{12 << 20, 3, 2 << 20},
		{50 << 20, 10, ps},
	}
	for _, tt := range tests {
		if got := expectedPartSize(tt.size, ps, tt.n); got != tt.want {
			t.Errorf("expectedPartSize(%d, %d, %d) = %d, want %d", tt.size, ps, tt.n, got, tt.want)
		}
	}
}

// TestExpectedPartSizeAddsUp: for every size, parts 1..TotalParts are all
// partSize but the last, which is 1..partSize, and they add up to size.
func TestExpectedPartSizeAddsUp(t *testing.T) {
	for _, ps := range []int64{1, 3, 7, 1024} {
		for size := int64(1); size <= 5*ps+1; size++ {
			total := TotalParts(size, ps)
			var sum int64
			for n := 1; n <= total; n++ {
				got := expectedPartSize(size, ps, n)
				if got < 1 || got > ps || (n < total && got != ps) {
					t.Fatalf("expectedPartSize(%d, %d, %d) = %d of %d parts", size, ps, n, got, total)
				}
				sum += got
			}
			if sum != size {
				t.Fatalf("parts of a %d-byte file with part size %d add up to %d", size, ps, sum)
			}
		}
	}
}

// slugTx is a Tx that knows a user's slugs; SlugsWithPrefix follows the
// port's contract (and the postgres adapter's query): slugs that start with
// the prefix. Other methods are not used.
type slugTx struct {
	Tx
	slugs []string
}

func (tx slugTx) SlugsWithPrefix(_ context.Context, _ string, prefix string) ([]string, error) {
	var out []string
	for _, s := range tx.slugs {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out, nil
}

func TestAvailableSlug(t *testing.T) {
	long := strings.Repeat("a", 80)
	tests := []struct {
		name  string
		title string
		taken []string
		want  string
	}{
		{"free", "My Castle", nil, "my-castle"},
		{"free, a longer slug exists", "My Castle", []string{"my-castle-tower"}, "my-castle"},
		{"free, a numbered slug exists", "My Castle", []string{"my-castle-2"}, "my-castle"},
		{"taken", "My Castle", []string{"my-castle"}, "my-castle-2"},
		{"taken twice", "My Castle", []string{"my-castle", "my-castle-2"}, "my-castle-3"},
		{"gap", "My Castle", []string{"my-castle", "my-castle-3"}, "my-castle-2"},
		{"a slug sharing the prefix without a dash does not count", "Castle", []string{"castles"}, "castle"},
		{"long slug taken", long, []string{long}, strings.Repeat("a", 78) + "-2"},
		{"long slug taken twice", long, []string{long, strings.Repeat("a", 78) + "-2"}, strings.Repeat("a", 78) + "-3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Service{}
			got, err := s.availableSlug(context.Background(), slugTx{slugs: tt.taken}, "u1", tt.title)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("availableSlug(%q) with %q taken = %q, want %q", tt.title, tt.taken, got, tt.want)
			}
		})
	}
}
