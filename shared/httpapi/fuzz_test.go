package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzDecodeRegisterFile sends random bodies to the register-file route.
// The service's store is fakeStore, where no session exists, so a body that
// passes every check ends at 404 NOT_FOUND: every answer must be a 4xx in
// the contract's shape, never a 500 or a panic.
func FuzzDecodeRegisterFile(f *testing.F) {
	for _, body := range []string{
		pdfFile,
		`{"fileKey":"castle.pdf","fileSizeBytes":1000,"mimeType":"application/pdf"}`,
		`{"category":"image","name":"a.png","size":1,"type":"image/png","ext":"png","checksums":{"md5":"` + strings.Repeat("0", 32) + `"}}`,
		`{"category":"parts-list","name":"p.csv","size":10485761,"type":"text/csv; charset=utf-8","ext":"csv"}`,
		`{"size":"abc"}`, `{"checksums":null}`, `null`, `[]`, ``, `{`, `{"name":"\u0000"}`,
		`{"fileKey":"../../etc/passwd","fileSizeBytes":-1,"mimeType":"APPLICATION/PDF"}`,
	} {
		f.Add([]byte(body))
	}
	h := fakeAPI(false).AllRoutes()
	f.Fuzz(func(t *testing.T, body []byte) {
		resp := proxy(t, h, asUser("POST", filesPath, string(body)))
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Fatalf("status = %d, want a 4xx; body %q gave %s", resp.StatusCode, body, resp.Body)
		}
		env := checkErrorEnvelope(t, resp.StatusCode, resp.Headers, resp.Body, "")
		if resp.StatusCode == http.StatusNotFound && env.Error.Message != "upload session not found" {
			t.Errorf("404 %q, want the fake store's missing session", env.Error.Message)
		}
	})
}
