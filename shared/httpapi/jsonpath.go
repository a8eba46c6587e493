package httpapi

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// Validation errors name the element that broke its rule the way a client
// writes it: files[2].size, checksums.md5, tags[0]. encoding/json's
// UnmarshalTypeError.Field has no array indices ("files.size"), and its
// decoder turns invalid UTF-8 into U+FFFD without a word, so both are found
// by walking the body's tokens.

// jsonWalk reads the tokens of a syntactically valid JSON body and keeps
// the path of the value at hand.
type jsonWalk struct {
	dec    *json.Decoder
	frames []jsonFrame
}

type jsonFrame struct {
	object  bool
	key     string // object: the member being read
	index   int    // array: the element being read
	wantKey bool   // object: the next string is a member name
}

func newJSONWalk(raw []byte) *jsonWalk {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return &jsonWalk{dec: dec}
}

// path is the current value's path: "" for the body itself.
func (w *jsonWalk) path() string { return pathOf(w.frames) }

// pathOf writes the frames as a client writes a path: files[2].size.
func pathOf(frames []jsonFrame) string {
	var b []byte
	for _, f := range frames {
		if f.object {
			if len(b) > 0 {
				b = append(b, '.')
			}
			b = append(b, f.key...)
		} else {
			b = append(b, '[')
			b = strconv.AppendInt(b, int64(f.index), 10)
			b = append(b, ']')
		}
	}
	return string(b)
}

// step reads one token and reports where it starts and ends, whether it
// is a member name, and the path of the value it is or opens (before
// opening it). ok is false at the end of the body or on a syntax error.
func (w *jsonWalk) step() (start, end int64, isName bool, valuePath string, ok bool) {
	start = w.dec.InputOffset()
	tok, err := w.dec.Token()
	if err != nil {
		return 0, 0, false, "", false
	}
	end = w.dec.InputOffset()
	if n := len(w.frames); n > 0 && w.frames[n-1].object && w.frames[n-1].wantKey {
		if d, closing := tok.(json.Delim); closing && d == '}' {
			w.frames = w.frames[:n-1]
			w.valueDone()
			return start, end, false, "", true
		}
		name, _ := tok.(string)
		w.frames[n-1].key, w.frames[n-1].wantKey = name, false
		return start, end, true, "", true
	}
	valuePath = w.path()
	switch tok {
	case json.Delim('{'):
		w.frames = append(w.frames, jsonFrame{object: true, wantKey: true})
	case json.Delim('['):
		w.frames = append(w.frames, jsonFrame{})
	case json.Delim(']'), json.Delim('}'):
		w.frames = w.frames[:len(w.frames)-1]
		w.valueDone()
		return start, end, false, "", true
	default:
		w.valueDone()
	}
	return start, end, false, valuePath, true
}

// valueDone moves the enclosing container past the value just read.
func (w *jsonWalk) valueDone() {
	if n := len(w.frames); n > 0 {
		if f := &w.frames[n-1]; f.object {
			f.wantKey = true
		} else {
			f.index++
		}
	}
}

// pathAt is the path of the value that ends at, or opens just before,
// offset: where encoding/json reports a value of the wrong type. "" when
// there is none.
func pathAt(raw []byte, offset int64) string {
	w := newJSONWalk(raw)
	for {
		_, end, isName, valuePath, ok := w.step()
		if !ok {
			return ""
		}
		if !isName && valuePath != "" && end >= offset {
			return valuePath
		}
	}
}

// invalidUTF8At is the path of the first string of raw that is not valid
// UTF-8 ("body" when it is not in a member), and whether that string is a
// member name (then the path is of the object holding it).
func invalidUTF8At(raw []byte) (path string, inName bool) {
	w := newJSONWalk(raw)
	for {
		start, end, isName, valuePath, ok := w.step()
		if !ok {
			return "body", false
		}
		// Between two tokens there is only ASCII (spaces, commas, colons).
		if utf8.Valid(raw[start:end]) {
			continue
		}
		if isName {
			// The path of the object, not of the member it names.
			valuePath = pathOf(w.frames[:len(w.frames)-1])
		}
		if valuePath == "" {
			valuePath = "body"
		}
		return valuePath, isName
	}
}
