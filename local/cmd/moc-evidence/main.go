// Command moc-evidence runs the seed story (STORY-01727) against a local
// stack it starts on free ports and stops when done:
//
//	moc-evidence stack [-hook-port 3090] [-hook-secret whsec_…] -- <command> [args…]
//	    starts the stack as __http__/story-01727-performance-observability.http's header
//	    asks (no AWS payload limits, thumbnails on, webhooks and OTLP/JSON traces to the
//	    receiver of `make http` on 127.0.0.1:<hook-port>), runs the command with HTTP_API and
//	    HTTP_WS set to the stack's APIs, and exits with the command's status: `make http-ci`
//	    runs `make http` so (CI does).
//	moc-evidence write [-out docs/evidence/STORY-01727.md]
//	    drives the story's requests itself and writes the proof document (`make evidence`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/mocbuilders/moc-upload/local/evidence"
)

func main() {
	if err := run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			os.Exit(exit.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "moc-evidence:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		return errors.New("usage: moc-evidence stack -- <command> | moc-evidence write [-out file]")
	}
	switch os.Args[1] {
	case "stack":
		return stackCmd(ctx, os.Args[2:])
	case "write":
		return writeCmd(ctx, os.Args[2:])
	}
	return fmt.Errorf("unknown command %q (stack, write)", os.Args[1])
}

func stackCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("stack", flag.ContinueOnError)
	hookPort := fs.Int("hook-port", envInt("HOOK_PORT", 3090), "port of make http's webhook and OTLP receiver")
	hookSecret := fs.String("hook-secret", os.Getenv("HOOK_SECRET"), "the receiver's webhook secret (whsec_…)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	command := fs.Args()
	if len(command) == 0 {
		return errors.New("stack: no command after --")
	}
	if *hookSecret == "" {
		return errors.New("stack: -hook-secret (or HOOK_SECRET) is needed: the stack signs its webhooks with it")
	}
	hook := "http://127.0.0.1:" + strconv.Itoa(*hookPort)
	env := map[string]string{
		"ENABLE_THUMBNAIL_GENERATION": "true",
		"MOC_FINALIZE_WEBHOOK_URL":    hook + "/hooks",
		"MOC_FINALIZE_WEBHOOK_SECRET": *hookSecret,
		"OTEL_EXPORTER_OTLP_ENDPOINT": hook,
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
		"WEBHOOK_RETRY_BASE_DELAY_MS": "200",
	}
	if v := os.Getenv("MAX_BATCH_BYTES"); v != "" {
		env["MAX_BATCH_BYTES"] = v
	}
	// The SDK's batch span processor reads its delay from the process's
	// environment: export every 500 ms, so OT-HP-001's wait is short.
	if os.Getenv("OTEL_BSP_SCHEDULE_DELAY") == "" {
		_ = os.Setenv("OTEL_BSP_SCHEDULE_DELAY", "500")
	}
	st, err := evidence.StartStack(ctx, env, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	fmt.Fprintf(os.Stderr, "moc-evidence: local stack on %s (WebSocket %s); running %v\n", st.HTTP, st.WS, command)
	cmd := exec.CommandContext(ctx, command[0], command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "HTTP_API="+st.HTTP, "HTTP_WS="+st.WS,
		"HOOK_PORT="+strconv.Itoa(*hookPort), "HOOK_SECRET="+*hookSecret)
	return cmd.Run()
}

func writeCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("write", flag.ContinueOnError)
	out := fs.String("out", "docs/evidence/STORY-01727.md", "the document to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return evidence.Write(ctx, *out)
}

func envInt(k string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(k)); err == nil && n > 0 {
		return n
	}
	return def
}
