package evidence

import (
	"io"
	"mime"
	"mime/multipart"
	"strings"
	"testing"
	"time"

	"github.com/mocbuilders/moc-upload/shared/telemetry/telemetrytest"
)

func TestSpanTreeNestsChildrenUnderParents(t *testing.T) {
	t0 := time.Unix(1000, 0)
	spans := []telemetrytest.Span{
		{Name: "POST /api/mocs/uploads/finalize", SpanID: "a", Kind: 2, Start: t0, End: t0.Add(10 * time.Millisecond), Status: "STATUS_CODE_UNSET",
			Attrs: map[string]string{"http.route": "/api/mocs/uploads/finalize", "net.peer.port": "1"}},
		{Name: "moc.upload.finalize", SpanID: "b", ParentID: "a", Kind: 1, Start: t0.Add(time.Millisecond), End: t0.Add(9 * time.Millisecond),
			Attrs: map[string]string{"mocId": "m1"}},
		{Name: "validate.files", SpanID: "c", ParentID: "b", Kind: 1, Start: t0.Add(2 * time.Millisecond), End: t0.Add(5 * time.Millisecond)},
	}
	got := spanTree(spans)
	want := "POST /api/mocs/uploads/finalize  [server, +0.0 ms … +10.0 ms, 10.0 ms, status UNSET] http.route=/api/mocs/uploads/finalize\n" +
		"  moc.upload.finalize  [internal, +1.0 ms … +9.0 ms, 8.0 ms, status ] mocId=m1\n" +
		"    validate.files  [internal, +2.0 ms … +5.0 ms, 3.0 ms, status ]\n"
	if got != want {
		t.Fatalf("spanTree:\n%s\nwant:\n%s", got, want)
	}
}

func TestFormEncodesNamedPartsWithTheirMD5(t *testing.T) {
	f := form{boundary: "b0undary", parts: []formPart{
		{name: "part1", filename: "a.part1", contentMD5: md5b64([]byte("one")), data: binary{"one", []byte("one")}},
		{name: "part2", filename: "a.part2", data: binary{"two", []byte("two")}},
	}}
	body, ct := f.encode()
	_, params, err := mime.ParseMediaType(ct)
	if err != nil || params["boundary"] != "b0undary" {
		t.Fatalf("Content-Type %q: %v", ct, err)
	}
	mr := multipart.NewReader(strings.NewReader(string(body)), "b0undary")
	var got []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		got = append(got, p.FormName()+"="+string(b)+" md5="+p.Header.Get("Content-MD5"))
	}
	want := "part1=one md5=" + md5b64([]byte("one")) + ",part2=two md5="
	if strings.Join(got, ",") != want {
		t.Fatalf("parts %q, want %q", strings.Join(got, ","), want)
	}
	if s := f.String(); !strings.Contains(s, "<3 bytes: one, MD5 f97c5d29941bfb1b2fdab0874906ab82>") {
		t.Fatalf("the document shows the bytes by size and MD5: %s", s)
	}
}

func TestAnchorIsGitHubs(t *testing.T) {
	for in, want := range map[string]string{
		"BU-HP-001 — Batch upload":                            "bu-hp-001--batch-upload",
		"PV-HP-001 timings — Sequential vs parallel finalize": "pv-hp-001-timings--sequential-vs-parallel-finalize",
		"WH-HP-001 — moc.finalized webhook":                   "wh-hp-001--mocfinalized-webhook",
		"Seed — The seed story's rows (make seed)":            "seed--the-seed-storys-rows-make-seed",
	} {
		if got := anchor(in); got != want {
			t.Errorf("anchor(%q) = %q, want %q", in, got, want)
		}
	}
}
