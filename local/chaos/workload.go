package chaos

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"strconv"
	"time"
)

// partSize is the service's part size (5 MiB): the PDF of a flow has two
// parts, the first exactly this long.
const partSize = 5 << 20

// pdfTail is the length of the PDF's second (last) part: small, so that
// sending it through the API fits API Gateway's and Lambda's payload
// limits, as a deployed client's proxied part must.
const pdfTail = 64 << 10

// Ack is something the service acknowledged: a part (Part > 0), a whole
// file PUT to its uploadUrl (Part 0), both with the digest of the bytes
// sent (a run sends gigabytes; it keeps digests, not bytes).
type Ack struct {
	User, Session, File string
	Part                int
	Sent                Digest
}

// MocAck is a MOC that finalize acknowledged (201, or 200 resumed), with
// the digest of each of its files' bytes, by name.
type MocAck struct {
	User, Session, ID, Title string
	Files                    map[string]Digest
}

// Digest stands for bytes sent: S3 holds the same bytes when it holds
// bytes of the same length and SHA-256. MD5 is S3's ETag of a part.
type Digest struct {
	Size   int
	SHA256 [32]byte
	MD5    [16]byte
}

func digest(b []byte) Digest {
	return Digest{Size: len(b), SHA256: sha256.Sum256(b), MD5: md5.Sum(b)}
}

// FlowFailure is a flow that stopped on an answer it could not go past.
type FlowFailure struct {
	User, Step string
	Answer     string
}

// user is one simulated client going through the whole flow again and
// again.
type user struct {
	id     string
	api    string // the gateway's base URL
	s      *sender
	rng    *rand.Rand
	acks   []Ack
	mocs   []MocAck
	failed []FlowFailure
	flows  int
	// finalErr is how the flow after the faults ended.
	finalErr error
}

// step retries one request until it succeeds, is refused for good (a 4xx)
// or ctx ends, backing off as the answer asks (Retry-After, capped at a
// second) or 100 ms doubling to a second.
func (u *user) step(ctx context.Context, route, method, url string, body []byte, headers map[string]string, auth bool) (answer, error) {
	bearer := ""
	if auth {
		bearer = u.id
	}
	backoff := 100 * time.Millisecond
	for {
		a := u.s.send(ctx, u.id, route, method, url, body, headers, bearer)
		if !a.retryable() {
			return a, nil
		}
		wait := backoff
		if s, err := strconv.Atoi(a.Header.Get("Retry-After")); err == nil && a.Err == nil {
			wait = min(time.Duration(s)*time.Second, time.Second)
		}
		backoff = min(2*backoff, time.Second)
		if !sleep(ctx, wait) {
			return a, fmt.Errorf("%s: gave up: %w", route, ctx.Err())
		}
	}
}

func (u *user) api2(ctx context.Context, route, method, path string, body any) (answer, error) {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return answer{}, err
		}
	}
	return u.step(ctx, route, method, u.api+path, raw, map[string]string{"Content-Type": "application/json"}, true)
}

type fileDecl struct {
	Category string `json:"category"`
	Name     string `json:"name"`
	Size     int    `json:"size"`
	Type     string `json:"type"`
	Ext      string `json:"ext"`
}

// errFlow is a flow stopped by an answer it cannot get past.
type errFlow struct{ step, answer string }

func (e errFlow) Error() string { return e.step + ": " + e.answer }

func describe(a answer) string {
	if a.Err != nil {
		return "no answer: " + a.Err.Error()
	}
	return fmt.Sprintf("%d %s", a.Status, bytes.TrimSpace(a.Raw[:min(len(a.Raw), 300)]))
}

// flow runs one whole upload: create a session, register a two-part PDF
// and a PNG, send the PDF's first part to a presigned URL and its second
// through the API, PUT the PNG whole to its uploadUrl, complete the PDF,
// finalize, read the MOC back. Every step is retried until it succeeds,
// as a client would; what the service acknowledged is kept in u.acks and
// u.mocs.
func (u *user) flow(ctx context.Context) error {
	u.flows++
	pdf := make([]byte, partSize+pdfTail)
	for i := 0; i < len(pdf); i += 8 {
		v := u.rng.Uint64()
		for j := 0; j < 8 && i+j < len(pdf); j++ {
			pdf[i+j] = byte(v >> (8 * j))
		}
	}
	copy(pdf, "%PDF-1.7\n")
	img := pngOf(u.rng.Uint32())
	pdfD := fileDecl{"instruction", "plan.pdf", len(pdf), "application/pdf", "pdf"}
	pngD := fileDecl{"image", "front.png", len(img), "image/png", "png"}

	a, err := u.api2(ctx, "POST create session", "POST", "/api/mocs/uploads/sessions", map[string]any{"files": []fileDecl{pdfD, pngD}})
	if err != nil {
		return err
	}
	if a.Status != 201 {
		return errFlow{"create session", describe(a)}
	}
	session, _ := a.Data["sessionId"].(string)
	base := "/api/mocs/uploads/sessions/" + session

	pdfID, _, err := u.register(ctx, base, pdfD)
	if err != nil {
		return err
	}
	pngID, pngUpload, err := u.register(ctx, base, pngD)
	if err != nil {
		return err
	}

	// PDF part 1 straight to S3, part 2 through the API.
	if err := u.presignedPart(ctx, base+"/files/"+pdfID, 1, pdf[:partSize]); err != nil {
		return err
	}
	u.acks = append(u.acks, Ack{u.id, session, pdfID, 1, digest(pdf[:partSize])})
	tail := pdf[partSize:]
	sum := md5.Sum(tail)
	a, err = u.step(ctx, "PUT proxied part", "PUT", u.api+base+"/files/"+pdfID+"/parts/2", tail,
		map[string]string{"Content-Type": "application/octet-stream", "Content-MD5": base64.StdEncoding.EncodeToString(sum[:])}, true)
	if err != nil {
		return err
	}
	if a.Status != 200 {
		return errFlow{"PUT proxied part", describe(a)}
	}
	u.acks = append(u.acks, Ack{u.id, session, pdfID, 2, digest(tail)})

	// The PNG whole to its uploadUrl; when a retried register lost it, in
	// one presigned part instead (what docs/api.md tells clients to do).
	if pngUpload != nil {
		a, err = u.step(ctx, "S3 PUT presigned whole file", "PUT", pngUpload.url, img, pngUpload.headers, false)
		if err != nil {
			return err
		}
		if a.Status != 200 {
			return errFlow{"S3 PUT presigned whole file", describe(a)}
		}
		u.acks = append(u.acks, Ack{u.id, session, pngID, 0, digest(img)})
	} else {
		if err := u.presignedPart(ctx, base+"/files/"+pngID, 1, img); err != nil {
			return err
		}
		u.acks = append(u.acks, Ack{u.id, session, pngID, 1, digest(img)})
	}

	a, err = u.api2(ctx, "POST complete file", "POST", base+"/files/"+pdfID+"/complete", nil)
	if err != nil {
		return err
	}
	if a.Status != 200 {
		return errFlow{"POST complete file", describe(a)}
	}

	title := fmt.Sprintf("Chaos %s flow %d", u.id, u.flows)
	a, err = u.api2(ctx, "POST finalize", "POST", "/api/mocs/uploads/finalize", map[string]any{"uploadSessionId": session, "title": title})
	if err != nil {
		return err
	}
	if a.Status != 201 && a.Status != 200 {
		return errFlow{"POST finalize", describe(a)}
	}
	mocID, _ := a.Data["id"].(string)
	u.mocs = append(u.mocs, MocAck{u.id, session, mocID, title, map[string]Digest{pdfD.Name: digest(pdf), pngD.Name: digest(img)}})

	a, err = u.api2(ctx, "GET moc", "GET", "/api/mocs/"+mocID, nil)
	if err != nil {
		return err
	}
	if a.Status != 200 {
		return errFlow{"GET moc", describe(a)}
	}
	if err := sameFiles(a.Data, map[string]int{pdfD.Name: len(pdf), pngD.Name: len(img)}); err != nil {
		return errFlow{"GET moc", err.Error()}
	}
	return nil
}

// presigned is an uploadUrl and its headers.
type presigned struct {
	url     string
	headers map[string]string
}

func presignedFrom(url any, headers any) *presigned {
	u, _ := url.(string)
	if u == "" {
		return nil
	}
	p := &presigned{url: u, headers: map[string]string{}}
	if h, ok := headers.(map[string]any); ok {
		for k, v := range h {
			p.headers[k], _ = v.(string)
		}
	}
	return p
}

// register registers f and returns its id and uploadUrl. A register whose
// answer was lost but which the service did is refused on retry (409
// DUPLICATE_FILE_NAME): the file is then looked up in the session, and
// comes without its uploadUrl.
func (u *user) register(ctx context.Context, base string, f fileDecl) (string, *presigned, error) {
	a, err := u.api2(ctx, "POST register file", "POST", base+"/files", f)
	if err != nil {
		return "", nil, err
	}
	switch {
	case a.Status == 201:
		id, _ := a.Data["fileId"].(string)
		return id, presignedFrom(a.Data["uploadUrl"], a.Data["uploadHeaders"]), nil
	case a.Status == 409 && a.Code == "DUPLICATE_FILE_NAME":
		s, err := u.api2(ctx, "GET session", "GET", base, nil)
		if err != nil {
			return "", nil, err
		}
		files, _ := s.Data["files"].([]any)
		for _, x := range files {
			if m, _ := x.(map[string]any); m != nil && m["name"] == f.Name {
				id, _ := m["fileId"].(string)
				return id, nil, nil
			}
		}
		return "", nil, errFlow{"GET session", "a file refused as a duplicate name is not in the session: " + describe(s)}
	}
	return "", nil, errFlow{"POST register file", describe(a)}
}

// presignedPart asks for part n's URL and PUTs body there, asking again
// when S3 refuses the URL.
func (u *user) presignedPart(ctx context.Context, file string, n int, body []byte) error {
	for range 5 {
		a, err := u.api2(ctx, "POST presign parts", "POST", file+"/parts/urls", map[string]any{"partNumbers": []int{n}})
		if err != nil {
			return err
		}
		parts, _ := a.Data["parts"].([]any)
		if a.Status != 200 || len(parts) != 1 {
			return errFlow{"POST presign parts", describe(a)}
		}
		p, _ := parts[0].(map[string]any)
		ps := presignedFrom(p["url"], p["headers"])
		if ps == nil {
			return errFlow{"POST presign parts", "no url: " + describe(a)}
		}
		a, err = u.step(ctx, "S3 PUT presigned part", "PUT", ps.url, body, ps.headers, false)
		if err != nil {
			return err
		}
		if a.Status == 200 {
			return nil
		}
	}
	return errFlow{"S3 PUT presigned part", "S3 refused five presigned URLs in a row"}
}

// sameFiles checks a MOC's files: exactly these names and sizes.
func sameFiles(moc map[string]any, want map[string]int) error {
	files, _ := moc["files"].([]any)
	got := map[string]int{}
	for _, x := range files {
		m, _ := x.(map[string]any)
		name, _ := m["name"].(string)
		size, _ := m["size"].(float64)
		got[name] = int(size)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Errorf("MOC files %v, want %v", got, want)
	}
	return nil
}

// pngOf is a small PNG whose pixels depend on seed, so that no two flows
// send the same image.
func pngOf(seed uint32) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 8, 8))
	for i := range 8 {
		img.Set(i, i, color.RGBA{R: byte(seed), G: byte(seed >> 8), B: byte(seed >> 16), A: 255})
		img.Set(7-i, i, color.RGBA{R: byte(seed >> 24), A: 255})
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	return buf.Bytes()
}

func itoa(n int) string { return strconv.Itoa(n) }

// run makes flows until stop is closed, then one more, with every fault
// undone: that last flow must succeed (the service recovers). A flow
// stopped by an answer is recorded and the next one starts.
func (u *user) run(ctx context.Context, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			u.finalErr = u.flow(ctx)
			return
		default:
		}
		if err := u.flow(ctx); err != nil {
			step, answer := "", err.Error()
			if ef, ok := err.(errFlow); ok {
				step, answer = ef.step, ef.answer
			}
			u.failed = append(u.failed, FlowFailure{User: u.id, Step: step, Answer: answer})
			if ctx.Err() != nil {
				u.finalErr = fmt.Errorf("the run's deadline passed before the faults ended: %w", ctx.Err())
				return
			}
		}
	}
}

// probeRoute is the prober's request: GET /api/mocs/{id}, which calls
// only PostgreSQL.
const probeRoute = "GET moc (probe)"

// probe makes one MOC, then reads it every interval until stop is
// closed, once each, whatever the faults: a steady sample of requests
// that call only PostgreSQL, so that one held back by requests waiting on
// S3 shows however the users' steps happen to fall.
func (u *user) probe(ctx context.Context, stop <-chan struct{}, every time.Duration) {
	for len(u.mocs) == 0 {
		if err := u.flow(ctx); err != nil && ctx.Err() != nil {
			return
		}
	}
	path := u.api + "/api/mocs/" + u.mocs[0].ID
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		u.s.send(ctx, u.id, probeRoute, "GET", path, nil, nil, u.id)
	}
}
