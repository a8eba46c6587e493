package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// FindPostgresBin returns the folder of PostgreSQL's server binaries:
// $PG_BIN, else where initdb is on PATH, else the newest
// /usr/lib/postgresql/<version>/bin (Debian's layout).
func FindPostgresBin() (string, error) {
	if dir := os.Getenv("PG_BIN"); dir != "" {
		return dir, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(real), nil
		}
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries not found: run `make deps` (installs Debian's postgresql) or set PG_BIN")
}

func pgVersion(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// PostgresOptions say where and how to run a cluster.
type PostgresOptions struct {
	DataDir string // created with initdb when it holds no cluster yet
	Port    int
	Log     io.Writer // the server's output (discarded when nil)
	// Fast turns off fsync and friends: for throwaway test clusters only.
	Fast bool
}

// Postgres is a running PostgreSQL server.
type Postgres struct {
	URL  string // the postgres database, as the postgres superuser
	proc *process
}

// StartPostgres runs a cluster in o.DataDir (initialising it when new) on
// 127.0.0.1:o.Port and waits until it accepts connections. As root it runs
// the server as the postgres user, which must be able to reach DataDir.
func StartPostgres(ctx context.Context, o PostgresOptions) (*Postgres, error) {
	bin, err := FindPostgresBin()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, err
	}
	sockDir := filepath.Join(o.DataDir, "sock")
	if err := os.MkdirAll(sockDir, 0o700); err != nil {
		return nil, err
	}
	if cred != nil {
		for _, d := range []string{o.DataDir, sockDir} {
			if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, err
			}
		}
		if err := reachable(o.DataDir, cred); err != nil {
			return nil, err
		}
	}
	pgdata := filepath.Join(o.DataDir, "data")
	if _, err := os.Stat(filepath.Join(pgdata, "PG_VERSION")); err != nil {
		args := []string{"-D", pgdata, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"}
		if o.Fast {
			args = append(args, "--no-sync")
		}
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("initdb %s: %w\n%s", pgdata, err, out)
		}
	}
	args := []string{"-D", pgdata, "-p", strconv.Itoa(o.Port), "-k", sockDir,
		"-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"}
	if o.Fast {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	proc, err := start("postgres", cmd, o.Log)
	if err != nil {
		return nil, err
	}
	pg := &Postgres{URL: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", o.Port), proc: proc}
	err = proc.waitReady(ctx, 60*time.Second, func() bool {
		c, err := pgx.Connect(ctx, pg.URL)
		if err != nil {
			return false
		}
		c.Close(ctx)
		return true
	})
	if err != nil {
		return nil, err
	}
	return pg, nil
}

// Stop shuts the server down (fast shutdown: SIGINT).
func (p *Postgres) Stop() error { return p.proc.stop(syscall.SIGINT, 20*time.Second) }

// serverCredential is who runs the server: nobody else when we are not
// root; the postgres user when we are, since PostgreSQL refuses root.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, errors.New("running as root, PostgreSQL needs the `postgres` user, which does not exist: run `make deps`")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// reachable checks that the postgres user can get into dir, which fails
// when an ancestor is private (for example a checkout under /root).
func reachable(dir string, cred *syscall.Credential) error {
	cmd := exec.Command("test", "-x", dir, "-a", "-w", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("PostgreSQL runs as the postgres user, which cannot reach %s (is a parent folder private?): set LOCAL_DATA_DIR to a folder it can reach, e.g. /var/tmp/moc-local", dir)
	}
	return nil
}

// CreateDatabase creates database name and returns its URL.
func CreateDatabase(ctx context.Context, adminURL, name string) (string, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// DropDatabase drops database name, closing its connections.
func DropDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}
