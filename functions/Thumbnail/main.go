// Command Thumbnail is the async Lambda function that makes a finalized MOC's thumbnail (an outbox job).
// It is the only function that links the image decoders and the HEIF
// decoder's WebAssembly runtime (package thumbnail).
package main

import (
	"github.com/mocbuilders/moc-upload/shared/app"
	"github.com/mocbuilders/moc-upload/shared/thumbnail"
)

func main() { app.AsyncMain("Thumbnail", app.Parts{Thumbnail: thumbnail.Generate}) }
