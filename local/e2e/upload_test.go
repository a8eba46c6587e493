package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"testing"
)

const mib = 1 << 20

// pdfBytes is a file that starts like a PDF, of n bytes.
func pdfBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{7})
	_, _ = r.Read(b)
	copy(b, "%PDF-1.7\n")
	return b
}

func pngBytes(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 4, 4))
	img.Set(1, 1, color.RGBA{R: 200, A: 255})
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func contentMD5(b []byte) string {
	sum := md5.Sum(b)
	return base64.StdEncoding.EncodeToString(sum[:])
}

type fileDecl struct {
	Category string `json:"category"`
	Name     string `json:"name"`
	Size     int    `json:"size"`
	Type     string `json:"type"`
	Ext      string `json:"ext"`
}

func pdfDecl(name string, size int) fileDecl {
	return fileDecl{"instruction", name, size, "application/pdf", "pdf"}
}

func pngDecl(name string, size int) fileDecl {
	return fileDecl{"image", name, size, "image/png", "png"}
}

func createSession(t *testing.T, c client, files ...fileDecl) string {
	t.Helper()
	d := c.json("POST", "/api/mocs/uploads/sessions", map[string]any{"files": files}).data(t, 201)
	return d["sessionId"].(string)
}

func registerFile(t *testing.T, c client, sessionID string, f fileDecl) map[string]any {
	t.Helper()
	return c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files", f).data(t, 201)
}

func partPath(sessionID, fileID string, n int) string {
	return "/api/mocs/uploads/sessions/" + sessionID + "/files/" + fileID + "/parts/" + itoa(n)
}

func itoa(n int) string { return strconv.Itoa(n) }

// uploadAll uploads every part of data and returns the parts as the
// complete route takes them.
func uploadAll(t *testing.T, c client, sessionID, fileID string, data []byte) []map[string]any {
	t.Helper()
	var parts []map[string]any
	for n, off := 1, 0; off < len(data); n, off = n+1, off+5*mib {
		end := min(off+5*mib, len(data))
		d := c.put(partPath(sessionID, fileID, n), data[off:end], "Content-MD5", contentMD5(data[off:end])).data(t, 200)
		if int(d["partNumber"].(float64)) != n || int(d["size"].(float64)) != end-off || int(d["completedParts"].(float64)) != n {
			t.Fatalf("part %d response: %v", n, d)
		}
		parts = append(parts, map[string]any{"partNumber": n, "etag": d["etag"]})
	}
	return parts
}

func download(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return b
}

func TestUploadAndFinalize(t *testing.T) {
	ctx := context.Background()
	user := userFor(t)
	c := newClient(t, user)
	pdf := pdfBytes(12 * mib)
	img := pngBytes(t)

	sessionID := createSession(t, c, pdfDecl("castle.pdf", len(pdf)), pngDecl("front.png", len(img)))
	pdfFile := registerFile(t, c, sessionID, pdfDecl("castle.pdf", len(pdf)))
	if pdfFile["totalParts"] != 3.0 || pdfFile["partSizeBytes"] != 5242880.0 || pdfFile["uploadId"] == "" {
		t.Fatalf("register pdf: %v", pdfFile)
	}
	imgFile := registerFile(t, c, sessionID, pngDecl("front.png", len(img)))
	pdfID, imgID := pdfFile["fileId"].(string), imgFile["fileId"].(string)

	parts := uploadAll(t, c, sessionID, pdfID, pdf)
	uploadAll(t, c, sessionID, imgID, img)

	// Resume view: both files with their parts.
	s := c.json("GET", "/api/mocs/uploads/sessions/"+sessionID, nil).data(t, 200)
	if s["status"] != "active" || len(s["files"].([]any)) != 2 {
		t.Fatalf("session: %v", s)
	}
	for _, f := range s["files"].([]any) {
		f := f.(map[string]any)
		if f["status"] != "uploading" || len(f["uploadedParts"].([]any)) != int(f["totalParts"].(float64)) {
			t.Fatalf("session file: %v", f)
		}
	}

	// A part list that is not the recorded one is refused, file untouched.
	unchanged(t, func() {
		d := c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+pdfID+"/complete", map[string]any{"parts": parts[:2]}).fail(t, 400, "BAD_REQUEST")
		if m, ok := d["mismatchedParts"].([]any); !ok || len(m) != 0 || d["expectedParts"] != 3.0 || d["givenParts"] != 2.0 {
			t.Fatalf("details: %v", d)
		}
	})

	// The PDF is completed explicitly (twice: idempotent), the PNG by finalize.
	done := c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+pdfID+"/complete", map[string]any{"parts": parts}).data(t, 200)
	again := c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files/"+pdfID+"/complete", nil).data(t, 200)
	if done["fileUrl"] == "" || done["fileUrl"] != again["fileUrl"] || done["fileId"] != pdfID {
		t.Fatalf("complete: %v then %v", done, again)
	}

	moc := c.json("POST", "/api/mocs/uploads/finalize", map[string]any{
		"uploadSessionId": sessionID, "title": "Castle Keep", "description": "A keep.",
		"tags": []string{"castle", "medieval"}, "theme": "Castle",
	}).data(t, 201)
	mocID := moc["id"].(string)
	if moc["title"] != "Castle Keep" || moc["slug"] != "castle-keep" || moc["status"] != "private" ||
		moc["theme"] != "Castle" || moc["description"] != "A keep." || moc["thumbnailStatus"] != "none" {
		t.Fatalf("moc: %v", moc)
	}
	if moc["pdfKey"] != done["fileUrl"] || len(moc["imageKeys"].([]any)) != 1 || len(moc["partsKeys"].([]any)) != 0 {
		t.Fatalf("moc keys: %v", moc)
	}
	if _, resumed := moc["resumed"]; resumed {
		t.Fatalf("first finalize says resumed: %v", moc)
	}
	files := moc["files"].([]any)
	if len(files) != 2 {
		t.Fatalf("moc files: %v", files)
	}
	want := map[string][]byte{pdfID: pdf, imgID: img}
	for _, f := range files {
		f := f.(map[string]any)
		body := download(t, f["downloadUrl"].(string))
		if !bytes.Equal(body, want[f["fileId"].(string)]) {
			t.Fatalf("stored bytes of %s differ from what was sent (%d vs %d bytes)", f["name"], len(body), len(want[f["fileId"].(string)]))
		}
	}
	if thumb, _ := moc["thumbnailUrl"].(string); !bytes.Equal(download(t, thumb), img) {
		t.Fatal("thumbnailUrl does not serve the first image")
	}

	// The rows behind it.
	var status, mocRef string
	if err := db.QueryRow(ctx, `SELECT status, moc_instruction_id::text FROM upload_sessions WHERE id = $1`, sessionID).Scan(&status, &mocRef); err != nil {
		t.Fatal(err)
	}
	if status != "completed" || mocRef != mocID {
		t.Fatalf("session row: %s %s", status, mocRef)
	}
	var title, slug, owner string
	if err := db.QueryRow(ctx, `SELECT title, slug, user_id FROM moc_instructions WHERE upload_session_id = $1`, sessionID).Scan(&title, &slug, &owner); err != nil {
		t.Fatal(err)
	}
	if title != "Castle Keep" || slug != "castle-keep" || owner != user {
		t.Fatalf("moc row: %s %s %s", title, slug, owner)
	}
	var mocFiles, pdfParts int
	var pdfBytesStored int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM moc_files WHERE moc_id = $1`, mocID).Scan(&mocFiles); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(ctx, `SELECT count(*), sum(size) FROM upload_session_parts WHERE file_id = $1`, pdfID).Scan(&pdfParts, &pdfBytesStored); err != nil {
		t.Fatal(err)
	}
	if mocFiles != 2 || pdfParts != 3 || pdfBytesStored != int64(len(pdf)) {
		t.Fatalf("moc_files %d, pdf parts %d of %d bytes", mocFiles, pdfParts, pdfBytesStored)
	}

	// A repeat finalize returns the same MOC and creates nothing.
	unchanged(t, func() {
		rep := c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Castle Keep"}).data(t, 200)
		if rep["id"] != mocID || rep["idempotent"] != true || rep["resumed"] != true {
			t.Fatalf("repeat finalize: %v", rep)
		}
	})
	got := c.json("GET", "/api/mocs/"+mocID, nil).data(t, 200)
	if got["id"] != mocID || got["slug"] != "castle-keep" || len(got["files"].([]any)) != 2 {
		t.Fatalf("get moc: %v", got)
	}
	c.as("e2e-someone-else").json("GET", "/api/mocs/"+mocID, nil).fail(t, 404, "NOT_FOUND")
	s = c.json("GET", "/api/mocs/uploads/sessions/"+sessionID, nil).data(t, 200)
	if s["status"] != "completed" || s["mocId"] != mocID {
		t.Fatalf("session after finalize: %v", s)
	}
}
