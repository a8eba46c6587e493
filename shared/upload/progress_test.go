package upload_test

import (
	"reflect"
	"testing"

	"github.com/mocbuilders/moc-upload/shared/upload"
)

// A batch's parts are recorded concurrently and collected in the order of
// the form: sorted, each file's CompletedParts never goes down.
func TestSortParts(t *testing.T) {
	p := func(file string, n, completed int) upload.PartCompleted {
		return upload.PartCompleted{SessionID: "s", FileID: file, PartNumber: n, TotalParts: 3, CompletedParts: completed}
	}
	parts := []upload.PartCompleted{p("f2", 1, 1), p("f1", 1, 3), p("f1", 2, 1), p("f1", 3, 2), p("f1", 4, 2)}
	upload.SortParts(parts)
	want := []upload.PartCompleted{p("f1", 2, 1), p("f1", 3, 2), p("f1", 4, 2), p("f1", 1, 3), p("f2", 1, 1)}
	if !reflect.DeepEqual(parts, want) {
		t.Errorf("sorted %v\nwant %v", parts, want)
	}
}

func TestEventsEmpty(t *testing.T) {
	if !(upload.Events{}).Empty() || (upload.Events{Finalized: &upload.SessionFinalized{}}).Empty() ||
		(upload.Events{Parts: []upload.PartCompleted{{}}}).Empty() {
		t.Error("Empty is true only without parts and without a finalized event")
	}
}
