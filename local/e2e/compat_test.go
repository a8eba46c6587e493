package e2e

import (
	"context"
	"slices"
	"testing"
)

// The old web client (michael-menard/monorepo: apps/web/main-app/src/
// services/api and packages/core/upload-types) run against the service:
// what it reads, asserted over HTTP. docs/api.md, "The old web client",
// lists every expectation and where the service differs on purpose.

// oldClientReasons are the details.files[].reason values the old client
// knows; it drops a file error with any other reason and then shows none.
var oldClientReasons = []string{"missing", "size", "type", "magic-bytes", "checksum"}

// oldClientUploadError is the old client's mapHttpErrorToUploadError: the
// API's error.type first (only EXPIRED_SESSION), then the status.
func oldClientUploadError(status int, apiType string) string {
	if apiType == "EXPIRED_SESSION" {
		return "EXPIRED_SESSION"
	}
	switch status {
	case 401:
		return "UNAUTHORIZED"
	case 403:
		return "FORBIDDEN"
	case 409:
		return "CONFLICT"
	case 413:
		return "PAYLOAD_TOO_LARGE"
	case 400, 415:
		return "UNSUPPORTED_TYPE"
	case 429:
		return "TOO_MANY_REQUESTS"
	case 0:
		return "NETWORK_ERROR"
	}
	if status >= 500 {
		return "SERVER_ERROR"
	}
	return "UNKNOWN"
}

// requestIDOf is what the old upload client keeps as the error's requestId:
// the X-Request-Id response header, which must name the same request as
// X-Correlation-Id (and the body's correlationId on an error).
func requestIDOf(t *testing.T, what string, r response) string {
	t.Helper()
	id := r.Header.Get("X-Request-Id")
	if id == "" || id != r.Header.Get("X-Correlation-Id") {
		t.Fatalf("%s (%d): X-Request-Id %q, X-Correlation-Id %q: want the same, non-empty", what, r.Status, id, r.Header.Get("X-Correlation-Id"))
	}
	if cid, ok := r.Body["correlationId"]; ok && cid != id {
		t.Fatalf("%s: correlationId %v, X-Request-Id %q", what, cid, id)
	}
	return id
}

func TestOldWebClientCompatibility(t *testing.T) {
	t.Run("every response carries X-Request-Id", func(t *testing.T) {
		c := newClient(t, userFor(t))
		pdf := pdfBytes(100)
		sessionID := createSession(t, c, pdfDecl("a.pdf", len(pdf)))
		base := "/api/mocs/uploads/sessions/" + sessionID
		f := registerFile(t, c, sessionID, pdfDecl("a.pdf", len(pdf)))
		responses := map[string]response{
			"201 register":  c.json("POST", base+"/files", pdfDecl("b.pdf", 100)),
			"200 part":      c.put(partPath(sessionID, f["fileId"].(string), 1), pdf),
			"200 session":   c.json("GET", base, nil),
			"401 no token":  c.as("").json("GET", base, nil),
			"404 not yours": c.as(userFor(t)+"-other").json("GET", base, nil),
			"422 invalid":   c.json("POST", base+"/files", map[string]any{"name": "x.pdf"}),
		}
		abortID := createSession(t, c, pdfDecl("c.pdf", 10))
		responses["204 abort"] = c.json("DELETE", "/api/mocs/uploads/sessions/"+abortID, nil)
		for what, r := range responses {
			requestIDOf(t, what, r)
		}
		// The client's own X-Correlation-Id names the request in both.
		r := c.do("GET", base, "", nil, "X-Correlation-Id", "web-client-7f3a")
		if id := requestIDOf(t, "with a client id", r); id != "web-client-7f3a" {
			t.Fatalf("X-Request-Id %q, want the client's web-client-7f3a", id)
		}
	})

	t.Run("a 410 says EXPIRED_SESSION", func(t *testing.T) {
		c := newClient(t, userFor(t))
		pdf := pdfBytes(100)
		sessionID := createSession(t, c, pdfDecl("a.pdf", len(pdf)))
		f := registerFile(t, c, sessionID, pdfDecl("a.pdf", len(pdf)))
		if _, err := db.Exec(context.Background(), `UPDATE upload_sessions SET expires_at = now() - interval '1 second' WHERE id = $1`, sessionID); err != nil {
			t.Fatal(err)
		}
		r := c.put(partPath(sessionID, f["fileId"].(string), 1), pdf)
		r.fail(t, 410, "SESSION_EXPIRED") // code SESSION_EXPIRED, type EXPIRED_SESSION
		e := r.Body["error"].(map[string]any)
		if got := oldClientUploadError(r.Status, e["type"].(string)); got != "EXPIRED_SESSION" {
			t.Fatalf("the old client maps this 410 to %s, want EXPIRED_SESSION (its session-expired banner): %s", got, r.Raw)
		}
		requestIDOf(t, "410", r)
	})

	t.Run("a file with parts missing fails with a reason the client knows", func(t *testing.T) {
		c := newClient(t, userFor(t))
		pdf := pdfBytes(6 * mib)
		img := pngBytes(t)
		sessionID := createSession(t, c, pdfDecl("a.pdf", len(pdf)), pngDecl("a.png", len(img)))
		pdfFile := registerFile(t, c, sessionID, pdfDecl("a.pdf", len(pdf)))
		pngFile := registerFile(t, c, sessionID, pngDecl("a.png", len(img)))
		// a.pdf gets one of its two parts, a.png none.
		c.put(partPath(sessionID, pdfFile["fileId"].(string), 1), pdf[:5*mib]).data(t, 200)
		d := c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Half"}).
			fail(t, 400, "FILE_VALIDATION_FAILED")
		files, _ := d["files"].([]any)
		got := map[string]string{}
		for _, x := range files {
			f := x.(map[string]any)
			reason, _ := f["reason"].(string)
			if !slices.Contains(oldClientReasons, reason) {
				t.Errorf("file %v: reason %q, which the old client drops (it knows %v)", f["filename"], reason, oldClientReasons)
			}
			got[f["fileId"].(string)] = reason
		}
		want := map[string]string{pdfFile["fileId"].(string): "missing", pngFile["fileId"].(string): "missing"}
		if len(got) != 2 || got[pdfFile["fileId"].(string)] != "missing" || got[pngFile["fileId"].(string)] != "missing" {
			t.Fatalf("details.files reasons %v, want %v", got, want)
		}
		assertNoMoc(t, sessionID)
	})

	t.Run("finalize answers the fields the client reads", func(t *testing.T) {
		c := newClient(t, userFor(t))
		pdf := pdfBytes(100)
		sessionID := createSession(t, c, pdfDecl("a.pdf", len(pdf)))
		f := registerFile(t, c, sessionID, pdfDecl("a.pdf", len(pdf)))
		uploadAll(t, c, sessionID, f["fileId"].(string), pdf)
		req := map[string]any{"uploadSessionId": sessionID, "title": "Old Client Castle", "description": "d", "tags": []string{"castle"}, "theme": "Castle"}
		first := c.json("POST", "/api/mocs/uploads/finalize", req)
		moc := first.data(t, 201)
		requestIDOf(t, "201 finalize", first)
		for _, k := range []string{"id", "title", "slug", "description", "status", "pdfKey", "imageKeys", "partsKeys", "tags", "theme", "createdAt"} {
			if _, ok := moc[k]; !ok {
				t.Errorf("data has no %s, which the old finalize client reads: %s", k, first.Raw)
			}
		}
		if moc["slug"] != "old-client-castle" || moc["status"] != "private" {
			t.Errorf("slug %v, status %v", moc["slug"], moc["status"])
		}
		if _, ok := moc["idempotent"]; ok && moc["idempotent"] != false {
			t.Errorf("a first finalize says idempotent %v", moc["idempotent"])
		}
		// The repeat: 200 and data.idempotent, which the client reports.
		again := c.json("POST", "/api/mocs/uploads/finalize", req).data(t, 200)
		if again["idempotent"] != true || again["id"] != moc["id"] {
			t.Fatalf("repeat finalize: idempotent %v, id %v (want true, %v)", again["idempotent"], again["id"], moc["id"])
		}
	})

	t.Run("a title conflict is a 409 with suggestedSlug", func(t *testing.T) {
		c := newClient(t, userFor(t))
		finalizedSession(t, c, "Old Client Bridge")
		pdf := pdfBytes(100)
		sessionID := createSession(t, c, pdfDecl("b.pdf", len(pdf)))
		f := registerFile(t, c, sessionID, pdfDecl("b.pdf", len(pdf)))
		uploadAll(t, c, sessionID, f["fileId"].(string), pdf)
		r := c.json("POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": sessionID, "title": "Old Client Bridge"})
		d := r.fail(t, 409, "CONFLICT")
		if d["suggestedSlug"] != "old-client-bridge-2" {
			t.Fatalf("error.details.suggestedSlug %v: %s", d["suggestedSlug"], r.Raw)
		}
		if got := oldClientUploadError(r.Status, r.Body["error"].(map[string]any)["type"].(string)); got != "CONFLICT" {
			t.Fatalf("the old client maps this 409 to %s", got)
		}
	})
}
