package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// errNoPostgres is FindPostgresBin's answer when nothing is installed.
var errNoPostgres = errors.New("PostgreSQL server binaries not found: run `make deps` (installs Debian's postgresql) or set PG_BIN")

// FindPostgresBin returns the folder holding PostgreSQL's server binaries
// (initdb and postgres): $PG_BIN when set, else the folder of the initdb
// found on PATH (symbolic links resolved), else the newest
// /usr/lib/postgresql/<version>/bin, where Debian installs them off PATH.
func FindPostgresBin() (dir string, err error) {
	if dir := os.Getenv("PG_BIN"); dir != "" {
		if !hasServerBinaries(dir) {
			return "", fmt.Errorf("PG_BIN=%s does not hold PostgreSQL's initdb and postgres", dir)
		}
		return dir, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && hasServerBinaries(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
		if hasServerBinaries(filepath.Dir(p)) {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.SliceStable(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if hasServerBinaries(d) {
			return d, nil
		}
	}
	return "", errNoPostgres
}

func hasServerBinaries(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// pgMajor is the major version in /usr/lib/postgresql/<major>/bin.
func pgMajor(binDir string) float64 {
	n, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return n
}

// PostgresOptions say where and how StartPostgres runs a cluster.
type PostgresOptions struct {
	// DataDir is the cluster's folder. When it holds no cluster yet
	// (no PG_VERSION), it must be missing or empty and initdb creates one;
	// parents are created as needed. A folder laid out by earlier versions
	// of this package (the cluster in DataDir/data) is used as is.
	DataDir string
	// Port is the TCP port the server listens on, on 127.0.0.1 only; 0
	// picks a free one (see FreePort).
	Port int
	// Log receives initdb's and the server's output (discarded when nil).
	Log io.Writer
	// Fast trades durability for speed: initdb --no-sync, and the server
	// runs with fsync, synchronous_commit and full_page_writes off. For
	// throwaway test clusters only: a crash can corrupt the cluster.
	Fast bool
}

// Postgres is a PostgreSQL server started by StartPostgres.
type Postgres struct {
	// URL is the postgres database as the postgres superuser (trust
	// authentication, no password), e.g.
	// postgres://postgres@127.0.0.1:54329/postgres?sslmode=disable.
	URL string
	// DataDir is the cluster's folder (PGDATA).
	DataDir string
	// Port is the TCP port on 127.0.0.1.
	Port int
	proc *process
}

// StartPostgres runs a PostgreSQL cluster in o.DataDir, initialising it
// with initdb when new (trust authentication, superuser postgres, UTF8, C
// locale), as a child process listening on 127.0.0.1:o.Port, and returns
// once the server accepts connections (at most 30 seconds).
//
// PostgreSQL refuses to run as root: as root, initdb and the server run as
// the postgres system user, which owns DataDir and must be able to reach it
// (a folder under /root is not reachable; /tmp or /var/tmp are).
//
// The server gets SIGTERM when this process dies; Stop stops it earlier.
// Start-up errors end with the server's last output.
func StartPostgres(ctx context.Context, o PostgresOptions) (*Postgres, error) {
	return startOnFreePort(o.Port, func(port int) (*Postgres, error) {
		o.Port = port
		return startPostgres(ctx, o)
	})
}

func startPostgres(ctx context.Context, o PostgresOptions) (*Postgres, error) {
	if o.DataDir == "" || o.Port <= 0 || o.Port > 65535 {
		return nil, fmt.Errorf("start PostgreSQL: need a data folder and a port, got %q and %d", o.DataDir, o.Port)
	}
	bin, err := FindPostgresBin()
	if err != nil {
		return nil, err
	}
	if PortOpen(fmt.Sprintf("127.0.0.1:%d", o.Port)) {
		return nil, fmt.Errorf("start PostgreSQL: port %d on 127.0.0.1 is already in use: stop what listens there or choose another port", o.Port)
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	pgdata, err := prepareDataDir(o.DataDir, cred)
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if _, err := os.Stat(filepath.Join(pgdata, "PG_VERSION")); err != nil {
		if err := initdb(ctx, bin, pgdata, cred, o); err != nil {
			return nil, err
		}
	} else if err := checkPidFile(pgdata); err != nil {
		return nil, err
	}

	args := []string{"-D", pgdata, "-p", strconv.Itoa(o.Port),
		"-k", socketDir(pgdata, o.Port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "max_connections=200"}
	if o.Fast {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
	cmd.Dir = pgdata
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	proc, err := start("postgres", cmd, o.Log)
	if err != nil {
		return nil, err
	}
	pg := &Postgres{
		URL:     fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", o.Port),
		DataDir: pgdata,
		Port:    o.Port,
		proc:    proc,
	}
	if err := proc.waitReady(ctx, 30*time.Second, func(ctx context.Context) bool { return pg.serves(ctx) }); err != nil {
		return nil, err
	}
	return pg, nil
}

// serves reports whether the server at p.URL accepts connections and is
// this cluster, not another server that held the port first.
func (p *Postgres) serves(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL)
	if err != nil {
		return false
	}
	defer conn.Close(ctx)
	var dir string
	if err := conn.QueryRow(ctx, "SELECT current_setting('data_directory')").Scan(&dir); err != nil {
		return false
	}
	return filepath.Clean(dir) == filepath.Clean(p.DataDir)
}

// Stop shuts the server down with a fast shutdown (SIGINT: open sessions
// are ended, the cluster is left consistent) and waits for it, killing it
// after 15 seconds. Stopping a stopped server does nothing.
func (p *Postgres) Stop() error {
	if p == nil {
		return nil
	}
	return p.proc.stop(syscall.SIGINT, 15*time.Second)
}

// prepareDataDir creates the cluster's folder, gives it to the server's
// user and checks that user can reach it. It returns PGDATA.
func prepareDataDir(dataDir string, cred *syscall.Credential) (string, error) {
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return "", err
	}
	// The layout of earlier versions: the cluster in DataDir/data.
	if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(dataDir, "data", "PG_VERSION")); err == nil {
			dataDir = filepath.Join(dataDir, "data")
		}
	}
	// Parents must stay traversable by the postgres user: 0755, not 0700.
	if err := os.MkdirAll(filepath.Dir(dataDir), 0o755); err != nil {
		return "", err
	}
	if err := os.Mkdir(dataDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	// PostgreSQL insists on a private data folder (0700 or 0750).
	if err := os.Chmod(dataDir, 0o700); err != nil {
		return "", err
	}
	if cred != nil {
		if err := chownTree(dataDir, cred); err != nil {
			return "", err
		}
		if err := reachable(dataDir, cred); err != nil {
			return "", err
		}
	}
	return dataDir, nil
}

// initdb creates a cluster in the empty or missing folder pgdata.
func initdb(ctx context.Context, bin, pgdata string, cred *syscall.Credential, o PostgresOptions) error {
	entries, err := os.ReadDir(pgdata)
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("%s holds no PostgreSQL cluster (no PG_VERSION) but is not empty: remove it, or choose another folder, to have a new cluster created there", pgdata)
	}
	args := []string{"-D", pgdata, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"}
	if o.Fast {
		args = append(args, "--no-sync")
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), args...)
	cmd.Dir = pgdata
	cmd.Stdout = io.MultiWriter(&out, o.Log)
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", pgdata, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// checkPidFile handles the postmaster.pid a killed server may have left.
// PostgreSQL ignores one whose process is gone, but refuses one whose PID
// was since reused by another process; such a file is removed here. A
// server still running on the folder is an error that says so.
func checkPidFile(pgdata string) error {
	path := filepath.Join(pgdata, "postmaster.pid")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return nil // not ours to judge: PostgreSQL reports it
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return nil // the process is gone: PostgreSQL removes the file itself
	}
	if strings.TrimSpace(string(comm)) == "postgres" {
		return fmt.Errorf("a PostgreSQL server (PID %d) is still running on %s, perhaps left by an earlier run: stop it (kill -INT %d) or use another folder", pid, pgdata, pid)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove the stale %s (PID %d is now %q): %w", path, pid, strings.TrimSpace(string(comm)), err)
	}
	return nil
}

// socketDir is where the server puts its Unix socket: the data folder,
// unless the socket's path would exceed the kernel's limit (108 bytes),
// in which case "" turns Unix sockets off (TCP is what clients use).
func socketDir(pgdata string, port int) string {
	if len(filepath.Join(pgdata, fmt.Sprintf(".s.PGSQL.%d", port))) >= 100 {
		return ""
	}
	return pgdata
}

// serverCredential is who runs initdb and the server: this process's user,
// unless that is root, which PostgreSQL refuses; then the postgres user.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, errors.New("running as root, PostgreSQL must run as the `postgres` system user, which does not exist: run `make deps` (installs Debian's postgresql, which creates it)")
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("the postgres user has a non-numeric uid %q or gid %q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// chownTree gives dir and, when it is not already the user's, everything
// in it to the user of cred.
func chownTree(dir string, cred *syscall.Credential) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == cred.Uid && st.Gid == cred.Gid {
		return nil
	}
	return filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(cred.Uid), int(cred.Gid))
	})
}

// reachable checks, as the user of cred, that dir can be entered and
// written: it cannot when an ancestor is private, like /root.
func reachable(dir string, cred *syscall.Credential) error {
	cmd := exec.Command("test", "-r", dir, "-a", "-w", dir, "-a", "-x", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return fmt.Errorf("PostgreSQL must run as the postgres user (this process is root), and that user cannot reach %s: a parent folder is private (e.g. under /root); put the data in a folder it can traverse, such as /tmp or /var/tmp", dir)
	}
	if err != nil {
		return fmt.Errorf("check that the postgres user can reach %s: %w", dir, err)
	}
	return nil
}

// CreateDatabase creates the database name on the server at adminURL
// (a superuser's or a role with CREATEDB) and returns adminURL pointing
// at the new database.
func CreateDatabase(ctx context.Context, adminURL, name string) (url string, err error) {
	u, err := databaseURL(adminURL, name)
	if err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return u, nil
}

// DropDatabase drops the database name, if it exists, on the server at
// adminURL, ending the sessions still connected to it (WITH (FORCE)).
func DropDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// databaseURL is adminURL with its database replaced by name.
func databaseURL(adminURL, name string) (string, error) {
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("the admin URL must be a postgres:// URL")
	}
	u.Path, u.RawPath = "/"+name, ""
	return u.String(), nil
}

// reuseTimeout bounds the checks of ReusePostgres and ReuseS3: a program
// that accepts connections and never answers must not hold `make local`.
const reuseTimeout = 3 * time.Second

// ReusePostgres checks that what listens on 127.0.0.1:port is a
// PostgreSQL server the stack can use as it uses its own (the postgres
// superuser, no password: another `make local`'s cluster), and returns
// its URL, within a few seconds. Otherwise the error names the port, what
// answers there (DescribeListener) and portVar, the variable that moves
// the stack to another port.
func ReusePostgres(ctx context.Context, port int, portVar string) (string, error) {
	url := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=3", port)
	ctx, cancel := context.WithTimeout(ctx, reuseTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err == nil {
		defer conn.Close(context.Background())
		var version string
		if err = conn.QueryRow(ctx, "SHOW server_version").Scan(&version); err == nil {
			return strings.TrimSuffix(url, "&connect_timeout=3"), nil
		}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return "", fmt.Errorf("port %d on 127.0.0.1 is a PostgreSQL server that does not let the stack in as postgres without a password (%s): stop it, or set %s to another port, where the stack starts its own",
			port, pgErr.Message, portVar)
	}
	return "", fmt.Errorf("port %d on 127.0.0.1, where the stack looks for its PostgreSQL, is taken by %s: stop it, or set %s to a free port, where the stack starts its own",
		port, DescribeListener(fmt.Sprintf("127.0.0.1:%d", port)), portVar)
}
