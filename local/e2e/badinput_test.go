package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// Every bad input gets the contract's 4xx error and changes no row or object.
func TestBadInputs(t *testing.T) {
	user := userFor(t)
	c := newClient(t, user)
	pdf := pdfBytes(6 * mib) // two parts: 5 MiB + 1 MiB
	sessionID := createSession(t, c, pdfDecl("a.pdf", len(pdf)))
	file := registerFile(t, c, sessionID, pdfDecl("a.pdf", len(pdf)))
	fileID := file["fileId"].(string)
	sessions := "/api/mocs/uploads/sessions/"
	filePath := sessions + sessionID + "/files/" + fileID
	other := c.as("e2e-intruder")

	cases := []struct {
		name   string
		do     func() response
		status int
		code   string
		check  func(t *testing.T, details map[string]any)
	}{
		{"no token", func() response { return c.as("").json("GET", sessions+sessionID, nil) }, 401, "UNAUTHORIZED", nil},
		{"no token create", func() response {
			return c.as("").json("POST", "/api/mocs/uploads/sessions", map[string]any{"files": []fileDecl{pdfDecl("x.pdf", 10)}})
		}, 401, "UNAUTHORIZED", nil},
		{"someone else's session", func() response { return other.json("GET", sessions+sessionID, nil) }, 404, "NOT_FOUND", nil},
		{"someone else's register", func() response {
			return other.json("POST", sessions+sessionID+"/files", pdfDecl("b.pdf", 10))
		}, 404, "NOT_FOUND", nil},
		{"someone else's part", func() response { return other.put(filePath+"/parts/1", pdf[:5*mib]) }, 404, "NOT_FOUND", nil},
		{"someone else's finalize", func() response {
			return other.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Mine"})
		}, 404, "NOT_FOUND", nil},
		{"someone else's abort", func() response { return other.json("DELETE", sessions+sessionID, nil) }, 404, "NOT_FOUND", nil},
		{"unknown session", func() response { return c.json("GET", sessions+uuid.NewString(), nil) }, 404, "NOT_FOUND", nil},
		{"unknown file", func() response { return c.put(sessions+sessionID+"/files/"+uuid.NewString()+"/parts/1", pdf[:5*mib]) }, 404, "NOT_FOUND", nil},
		{"unknown moc", func() response { return c.json("GET", "/api/mocs/"+uuid.NewString(), nil) }, 404, "NOT_FOUND", nil},
		{"session id not a uuid", func() response { return c.json("GET", sessions+"not-a-uuid", nil) }, 400, "BAD_REQUEST", nil},
		{"malformed JSON", func() response { return c.json("POST", sessions+sessionID+"/files", `{"name": "x.pdf",`) }, 400, "BAD_REQUEST", nil},
		{"empty JSON body", func() response { return c.json("POST", "/api/mocs/uploads/sessions", "") }, 400, "BAD_REQUEST", nil},
		{"missing fields", func() response {
			return c.json("POST", sessions+sessionID+"/files", map[string]any{"category": "instruction", "type": "application/pdf"})
		}, 422, "VALIDATION_ERROR", func(t *testing.T, d map[string]any) {
			errs := d["errors"].(map[string]any)
			for _, f := range []string{"name", "size", "ext"} {
				if errs[f] == nil {
					t.Errorf("details.errors does not name %s: %v", f, errs)
				}
			}
		}},
		{"wrong field type", func() response {
			return c.json("POST", sessions+sessionID+"/files", `{"category":"instruction","name":"x.pdf","size":"big","type":"application/pdf","ext":"pdf"}`)
		}, 422, "VALIDATION_ERROR", nil},
		{"no files declared", func() response { return c.json("POST", "/api/mocs/uploads/sessions", map[string]any{"files": []any{}}) }, 422, "VALIDATION_ERROR", nil},
		{"part number 0", func() response { return c.put(filePath+"/parts/0", pdf[:5*mib]) }, 400, "INVALID_PART_NUMBER", nil},
		{"part number 10001", func() response { return c.put(filePath+"/parts/10001", pdf[:5*mib]) }, 400, "INVALID_PART_NUMBER", nil},
		{"part number abc", func() response { return c.put(filePath+"/parts/abc", pdf[:5*mib]) }, 400, "INVALID_PART_NUMBER", nil},
		{"part number past the file", func() response { return c.put(filePath+"/parts/3", pdf[:mib]) }, 400, "INVALID_PART_NUMBER", nil},
		{"wrong part size", func() response { return c.put(filePath+"/parts/1", pdf[:4*mib]) }, 400, "INVALID_PART_SIZE", func(t *testing.T, d map[string]any) {
			if d["expectedSize"] != float64(5*mib) {
				t.Errorf("details: %v", d)
			}
		}},
		{"wrong last part size", func() response { return c.put(filePath+"/parts/2", pdf[:mib+1]) }, 400, "INVALID_PART_SIZE", nil},
		{"empty body", func() response { return c.put(filePath+"/parts/1", nil) }, 400, "BAD_REQUEST", nil},
		{"Content-MD5 mismatch", func() response {
			return c.put(filePath+"/parts/2", pdf[5*mib:], "Content-MD5", contentMD5([]byte("other bytes")))
		}, 400, "CHECKSUM_MISMATCH", nil},
		{"name with ../", func() response { return c.json("POST", sessions+sessionID+"/files", pdfDecl("../etc.pdf", 10)) }, 422, "VALIDATION_ERROR", nil},
		{"name with a control character", func() response { return c.json("POST", sessions+sessionID+"/files", pdfDecl("a\x07b.pdf", 10)) }, 422, "VALIDATION_ERROR", nil},
		{"name with a slash at create", func() response {
			return c.json("POST", "/api/mocs/uploads/sessions", map[string]any{"files": []fileDecl{pdfDecl("dir/a.pdf", 10)}})
		}, 422, "VALIDATION_ERROR", nil},
		{"MIME type outside the category", func() response {
			return c.json("POST", sessions+sessionID+"/files", fileDecl{"instruction", "a.png", 10, "image/png", "png"})
		}, 415, "UNSUPPORTED_MEDIA_TYPE", func(t *testing.T, d map[string]any) {
			if len(d["allowedTypes"].([]any)) != 1 {
				t.Errorf("details: %v", d)
			}
		}},
		{"oversized file", func() response { return c.json("POST", sessions+sessionID+"/files", pdfDecl("huge.pdf", 100*mib+1)) }, 413, "FILE_TOO_LARGE", nil},
		{"oversized file at create", func() response {
			return c.json("POST", "/api/mocs/uploads/sessions", map[string]any{"files": []fileDecl{pdfDecl("x.pdf", 10), pngDecl("big.png", 20*mib+1)}})
		}, 413, "FILE_TOO_LARGE", nil},
		{"too many images at create", func() response {
			files := []fileDecl{pdfDecl("x.pdf", 10)}
			for i := range 11 {
				files = append(files, pngDecl("i"+itoa(i)+".png", 10))
			}
			return c.json("POST", "/api/mocs/uploads/sessions", map[string]any{"files": files})
		}, 400, "BAD_REQUEST", nil},
		{"no instruction file at create", func() response {
			return c.json("POST", "/api/mocs/uploads/sessions", map[string]any{"files": []fileDecl{pngDecl("x.png", 10)}})
		}, 400, "BAD_REQUEST", nil},
		{"duplicate file name", func() response { return c.json("POST", sessions+sessionID+"/files", pdfDecl("a.pdf", 10)) }, 409, "DUPLICATE_FILE_NAME", nil},
		{"complete with missing parts", func() response { return c.json("POST", filePath+"/complete", nil) }, 409, "INCOMPLETE_UPLOAD", func(t *testing.T, d map[string]any) {
			if len(d["missingParts"].([]any)) != 2 {
				t.Errorf("details: %v", d)
			}
		}},
		{"finalize without a title", func() response {
			return c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID})
		}, 422, "VALIDATION_ERROR", nil},
		{"finalize with missing parts", func() response {
			return c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Half"})
		}, 400, "FILE_VALIDATION_FAILED", func(t *testing.T, d map[string]any) {
			f := d["files"].([]any)[0].(map[string]any)
			if f["reason"] != "missing" || f["fileId"] != fileID || f["filename"] != "a.pdf" {
				t.Errorf("details: %v", d)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			unchanged(t, func() {
				d := tc.do().fail(t, tc.status, tc.code)
				if tc.check != nil {
					tc.check(t, d)
				}
			})
		})
	}
}

func TestTooManyImagesRegistered(t *testing.T) {
	c := newClient(t, userFor(t))
	sessionID := createSession(t, c, pdfDecl("a.pdf", 10))
	for i := range 10 {
		registerFile(t, c, sessionID, pngDecl("i"+itoa(i)+".png", 10))
	}
	unchanged(t, func() {
		c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files", pngDecl("eleven.png", 10)).fail(t, 400, "BAD_REQUEST")
	})
}

func TestFinalizeRefusals(t *testing.T) {
	c := newClient(t, userFor(t))

	t.Run("session without an instruction file", func(t *testing.T) {
		img := pngBytes(t)
		sessionID := createSession(t, c, pdfDecl("a.pdf", 10), pngDecl("a.png", len(img)))
		f := registerFile(t, c, sessionID, pngDecl("a.png", len(img)))
		uploadAll(t, c, sessionID, f["fileId"].(string), img)
		unchanged(t, func() {
			c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "No PDF"}).fail(t, 400, "BAD_REQUEST")
		})
	})

	t.Run("bytes that do not match the type", func(t *testing.T) {
		notPDF := []byte(strings.Repeat("plain text, not a PDF\n", 10))
		sessionID := createSession(t, c, pdfDecl("fake.pdf", len(notPDF)))
		f := registerFile(t, c, sessionID, pdfDecl("fake.pdf", len(notPDF)))
		uploadAll(t, c, sessionID, f["fileId"].(string), notPDF)
		d := c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Fake"}).fail(t, 400, "FILE_VALIDATION_FAILED")
		got := d["files"].([]any)[0].(map[string]any)
		if got["reason"] != "magic-bytes" || got["filename"] != "fake.pdf" {
			t.Fatalf("details: %v", d)
		}
		assertNoMoc(t, sessionID)

		// The session shows the file as failed; it takes no more parts,
		// and registering its name again replaces it.
		s := c.json("GET", "/api/mocs/uploads/sessions/"+sessionID, nil).data(t, 200)
		if f := s["files"].([]any)[0].(map[string]any); f["status"] != "failed" || s["status"] != "active" {
			t.Fatalf("session after a refused finalize: %v", s)
		}
		oldID, oldKey := f["fileId"].(string), objectKey(t, f["fileId"].(string))
		c.put(partPath(sessionID, oldID, 1), notPDF).fail(t, 409, "FILE_ALREADY_COMPLETED")
		pdf := pdfBytes(len(notPDF))
		again := registerFile(t, c, sessionID, pdfDecl("fake.pdf", len(pdf)))
		uploadAll(t, c, sessionID, again["fileId"].(string), pdf)
		moc := c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Fixed"}).data(t, 201)
		if files := moc["files"].([]any); len(files) != 1 || files[0].(map[string]any)["fileId"] != again["fileId"] {
			t.Fatalf("moc files: %v", files)
		}
		if strings.Contains(snapshot(t), oldKey) {
			t.Fatalf("the replaced file's object %s is still stored", oldKey)
		}
	})

	t.Run("declared checksum that does not match", func(t *testing.T) {
		pdf := pdfBytes(1000)
		sessionID := createSession(t, c, pdfDecl("sum.pdf", len(pdf)))
		body := map[string]any{"category": "instruction", "name": "sum.pdf", "size": len(pdf), "type": "application/pdf", "ext": "pdf",
			"checksums": map[string]string{"sha256": strings.Repeat("ab", 32)}}
		f := c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files", body).data(t, 201)
		uploadAll(t, c, sessionID, f["fileId"].(string), pdf)
		d := c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Sum"}).fail(t, 400, "CHECKSUM_MISMATCH")
		if d["files"].([]any)[0].(map[string]any)["reason"] != "checksum" {
			t.Fatalf("details: %v", d)
		}
		assertNoMoc(t, sessionID)
	})

	t.Run("duplicate title", func(t *testing.T) {
		first := finalizedSession(t, c, "Tower Bridge")
		_ = first
		pdf := pdfBytes(100)
		sessionID := createSession(t, c, pdfDecl("b.pdf", len(pdf)))
		f := registerFile(t, c, sessionID, pdfDecl("b.pdf", len(pdf)))
		uploadAll(t, c, sessionID, f["fileId"].(string), pdf)
		unchanged(t, func() {
			d := c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Tower Bridge"}).fail(t, 409, "CONFLICT")
			if d["title"] != "Tower Bridge" || d["suggestedSlug"] != "tower-bridge-2" {
				t.Fatalf("details: %v", d)
			}
		})
		// A different title with the same slug gets the next free slug.
		moc := c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Tower  bridge!"}).data(t, 201)
		if moc["slug"] != "tower-bridge-2" {
			t.Fatalf("slug %v", moc["slug"])
		}
	})
}

// finalizedSession uploads a one-part PDF and finalizes it under title.
func finalizedSession(t *testing.T, c client, title string) map[string]any {
	t.Helper()
	pdf := pdfBytes(100)
	sessionID := createSession(t, c, pdfDecl("a.pdf", len(pdf)))
	f := registerFile(t, c, sessionID, pdfDecl("a.pdf", len(pdf)))
	uploadAll(t, c, sessionID, f["fileId"].(string), pdf)
	return c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": title}).data(t, 201)
}

func objectKey(t *testing.T, fileID string) string {
	t.Helper()
	var key string
	if err := db.QueryRow(context.Background(), `SELECT s3_key FROM upload_session_files WHERE id = $1`, fileID).Scan(&key); err != nil {
		t.Fatal(err)
	}
	return key
}

func assertNoMoc(t *testing.T, sessionID string) {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM moc_instructions WHERE upload_session_id = $1`, sessionID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d MOCs exist for session %s", n, sessionID)
	}
}

func TestWritesAfterExpiry(t *testing.T) {
	c := newClient(t, userFor(t))
	pdf := pdfBytes(100)
	sessionID := createSession(t, c, pdfDecl("a.pdf", len(pdf)))
	f := registerFile(t, c, sessionID, pdfDecl("a.pdf", len(pdf)))
	fileID := f["fileId"].(string)
	if _, err := db.Exec(context.Background(), `UPDATE upload_sessions SET expires_at = now() - interval '1 second' WHERE id = $1`, sessionID); err != nil {
		t.Fatal(err)
	}
	base := "/api/mocs/uploads/sessions/" + sessionID
	unchanged(t, func() {
		c.json("POST", base+"/files", pdfDecl("b.pdf", 10)).fail(t, 410, "SESSION_EXPIRED")
		c.put(partPath(sessionID, fileID, 1), pdf).fail(t, 410, "SESSION_EXPIRED")
		c.json("POST", base+"/files/"+fileID+"/complete", nil).fail(t, 410, "SESSION_EXPIRED")
		c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Late"}).fail(t, 410, "SESSION_EXPIRED")
	})
	if s := c.json("GET", base, nil).data(t, 200); s["status"] != "expired" {
		t.Fatalf("status %v", s["status"])
	}
}

func TestDailyLimit(t *testing.T) {
	c := newClient(t, userFor(t))
	for range 5 { // UPLOAD_RATE_LIMIT_PER_DAY in testEnv
		createSession(t, c, pdfDecl("a.pdf", 10))
	}
	unchanged(t, func() {
		r := c.json("POST", "/api/mocs/uploads/sessions", map[string]any{"files": []fileDecl{pdfDecl("a.pdf", 10)}})
		d := r.fail(t, 429, "TOO_MANY_REQUESTS")
		if r.Header.Get("Retry-After") == "" || d["nextAllowedAt"] == nil || d["retryAfterSeconds"] == nil {
			t.Fatalf("Retry-After %q, details %v", r.Header.Get("Retry-After"), d)
		}
	})
	// Another user is not limited by this one.
	createSession(t, c.as(userFor(t)+"-other"), pdfDecl("a.pdf", 10))
}

func TestAbortSession(t *testing.T) {
	ctx := context.Background()
	c := newClient(t, userFor(t))
	pdf := pdfBytes(6 * mib)
	sessionID := createSession(t, c, pdfDecl("a.pdf", len(pdf)))
	f := registerFile(t, c, sessionID, pdfDecl("a.pdf", len(pdf)))
	c.put(partPath(sessionID, f["fileId"].(string), 1), pdf[:5*mib]).data(t, 200)

	r := c.json("DELETE", "/api/mocs/uploads/sessions/"+sessionID, nil)
	if r.Status != 204 {
		t.Fatalf("abort: %d %s", r.Status, r.Raw)
	}
	if c.json("DELETE", "/api/mocs/uploads/sessions/"+sessionID, nil).Status != 204 {
		t.Fatal("second abort is not a no-op")
	}
	var status string
	if err := db.QueryRow(ctx, `SELECT status FROM upload_sessions WHERE id = $1`, sessionID).Scan(&status); err != nil || status != "cancelled" {
		t.Fatalf("status %q, %v", status, err)
	}
	if snap := snapshot(t); strings.Contains(snap, "upload:"+f["uploadId"].(string)) {
		t.Fatal("the multipart upload was not aborted")
	}
	unchanged(t, func() {
		c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files", pdfDecl("b.pdf", 10)).fail(t, 400, "SESSION_NOT_ACTIVE")
	})
}

func TestRegisterWithSeedSpelling(t *testing.T) {
	c := newClient(t, userFor(t))
	sessionID := createSession(t, c, pdfDecl("a.pdf", 10))
	d := c.json("POST", "/api/mocs/uploads/sessions/"+sessionID+"/files",
		map[string]any{"fileKey": "photo.jpg", "fileSizeBytes": 1234, "mimeType": "image/jpeg"}).data(t, 201)
	s := c.json("GET", "/api/mocs/uploads/sessions/"+sessionID, nil).data(t, 200)
	f := s["files"].([]any)[0].(map[string]any)
	if f["fileId"] != d["fileId"] || f["name"] != "photo.jpg" || f["category"] != "image" || f["ext"] != "jpg" || f["size"] != 1234.0 {
		t.Fatalf("registered file: %v", f)
	}
}
