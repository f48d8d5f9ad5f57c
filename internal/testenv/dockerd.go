package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dockroot/dockroot/internal/mountinfo"
)

// systemContainerdSocket is where dockerd 20.10 looks for a running system
// containerd (cmd/dockerd/daemon.go systemContainerdRunning). When it is
// absent, dockerd supervises a private containerd of its own under
// --exec-root and --data-root, which is what a private test daemon wants.
const systemContainerdSocket = "/run/containerd/containerd.sock"

// Dockerd is a private Docker daemon with its own data root, socket, pid
// file and exec root, sharing nothing with a system dockerd.
type Dockerd struct {
	Root     string // --data-root
	Socket   string // unix socket path (DOCKER_HOST=unix://Socket)
	PIDFile  string
	ExecRoot string
	Log      string // dockerd's stdout and stderr
	PID      int

	runDir    string // short directory holding Socket, PIDFile and ExecRoot
	cliConfig string // DOCKER_CONFIG, so ~/.docker is never read or written
	cmd       *exec.Cmd
	done      chan struct{}
	waitErr   error
	stopped   bool
}

// StartDockerdProcess starts Debian's dockerd (20.10) with the btrfs storage
// driver on dataRoot, keeping its log and client config in workDir, and
// waits until its API answers. No networking is set up: the fixtures need
// none and the host's iptables stay untouched. Call Stop when done.
func StartDockerdProcess(dataRoot, workDir string) (*Dockerd, error) {
	return StartDockerdProcessDriver(dataRoot, workDir, "btrfs")
}

// StartDockerdProcessDriver is StartDockerdProcess with another storage
// driver, for tests of what dockroot says about stores it cannot read.
func StartDockerdProcessDriver(dataRoot, workDir, driver string) (*Dockerd, error) {
	return startDockerd(dockerdSpec{dataRoot: dataRoot, workDir: workDir, driver: driver, binary: "dockerd", config: "{}\n"})
}

// dockerdSpec says which dockerd to start and how.
type dockerdSpec struct {
	dataRoot, workDir, driver string
	binary                    string // dockerd's path, or "dockerd" on PATH
	config                    string // daemon.json
	pathPrefix                string // directory put first on dockerd's PATH (its containerd)
	ownContainerd             bool   // never use a system containerd
	env                       []string
}

func startDockerd(spec dockerdSpec) (*Dockerd, error) {
	dataRoot, workDir, driver := spec.dataRoot, spec.workDir, spec.driver
	for _, dir := range []string{dataRoot, workDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("start dockerd: %w", err)
		}
	}
	// A unix socket path must fit in 108 bytes, and containerd puts its own
	// sockets below the exec root, so they live in a short directory of
	// their own rather than in a test's deep temporary directory.
	runDir, err := os.MkdirTemp("", "drd-")
	if err != nil {
		return nil, fmt.Errorf("start dockerd: %w", err)
	}
	d := &Dockerd{
		Root:      dataRoot,
		Socket:    filepath.Join(runDir, "docker.sock"),
		PIDFile:   filepath.Join(runDir, "docker.pid"),
		ExecRoot:  filepath.Join(runDir, "exec"),
		Log:       filepath.Join(workDir, "dockerd.log"),
		runDir:    runDir,
		cliConfig: filepath.Join(workDir, "docker-cli"),
		done:      make(chan struct{}),
	}
	configFile := filepath.Join(workDir, "daemon.json")
	if err := os.WriteFile(configFile, []byte(spec.config), 0o644); err != nil {
		os.RemoveAll(runDir)
		return nil, fmt.Errorf("start dockerd: %w", err)
	}
	args := []string{
		"--data-root", dataRoot,
		"--exec-root", d.ExecRoot,
		"--pidfile", d.PIDFile,
		"--host", "unix://" + d.Socket,
		// Never read /etc/docker/daemon.json: the host's settings must not
		// leak into the test daemon.
		"--config-file", configFile,
		"--iptables=false", "--ip-masq=false", "--ip-forward=false",
		"--bridge=none", "--userland-proxy=false",
		"--shutdown-timeout", "2",
	}
	if driver != "" {
		args = append(args, "--storage-driver", driver)
	}
	if _, err := os.Lstat(systemContainerdSocket); err == nil && !spec.ownContainerd {
		// dockerd would then use the system containerd; a namespace of its
		// own keeps its containers apart from everyone else's.
		args = append(args, "--containerd-namespace", "dockroot-"+filepath.Base(runDir),
			"--containerd-plugins-namespace", "dockroot-"+filepath.Base(runDir)+"-plugins")
	}
	logf, err := os.Create(d.Log)
	if err != nil {
		os.RemoveAll(runDir)
		return nil, fmt.Errorf("start dockerd: %w", err)
	}
	defer logf.Close()
	d.cmd = exec.Command(spec.binary, args...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	pathEnv := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	if spec.pathPrefix != "" {
		pathEnv = spec.pathPrefix + ":" + pathEnv
	}
	d.cmd.Env = append([]string{"PATH=" + pathEnv, "HOME=" + workDir}, spec.env...)
	// Pdeathsig kills dockerd if the test binary dies without running its
	// cleanups (a go test timeout). It fires when the forking thread exits,
	// so the fork happens on a locked thread that lives as long as dockerd.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := d.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		d.waitErr = d.cmd.Wait()
		close(d.done)
	}()
	if err := <-started; err != nil {
		os.RemoveAll(runDir)
		return nil, fmt.Errorf("start dockerd %s: %w", strings.Join(args, " "), err)
	}
	d.PID = d.cmd.Process.Pid
	if err := d.waitReady(60 * time.Second); err != nil {
		if serr := d.Stop(); serr != nil {
			err = fmt.Errorf("%w (and stopping it: %v)", err, serr)
		}
		return nil, err
	}
	return d, nil
}

// waitReady polls /_ping on the socket until dockerd answers, exits, or
// timeout passes.
func (d *Dockerd) waitReady(timeout time.Duration) error {
	client := d.httpClient()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get("http://docker/_ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-d.done:
			return fmt.Errorf("dockerd (pid %d) exited before answering on %s: %v\n%s", d.PID, d.Socket, d.waitErr, d.LogTail(30))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dockerd (pid %d) did not answer on %s within %v: last error %v\n%s", d.PID, d.Socket, timeout, err, d.LogTail(30))
		}
	}
}

func (d *Dockerd) httpClient() *http.Client {
	return &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dialer net.Dialer
			return dialer.DialContext(ctx, "unix", d.Socket)
		}},
	}
}

// Stop stops dockerd by PID: SIGTERM, then SIGKILL after 20 s. It then ends
// any process still using the private exec root (containerd shims left by a
// killed daemon), unmounts what dockerd mounted below the data root and exec
// root (it bind-mounts the data root and btrfs/ onto themselves to make them
// private, and leaves those behind when killed), and removes the run
// directory, so the loop btrfs under the data root can be unmounted.
func (d *Dockerd) Stop() error {
	if d.stopped {
		return nil
	}
	d.stopped = true
	var errs []error
	select {
	case <-d.done:
	default:
		if err := syscall.Kill(d.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("stop dockerd: kill -TERM %d: %w", d.PID, err))
		}
		select {
		case <-d.done:
		case <-time.After(20 * time.Second):
			errs = append(errs, fmt.Errorf("stop dockerd: pid %d ignored SIGTERM for 20s; killed", d.PID))
			_ = syscall.Kill(d.PID, syscall.SIGKILL)
			<-d.done
		}
	}
	if err := killUsers(d.runDir); err != nil {
		errs = append(errs, err)
	}
	if err := unmountBelow(d.Root, d.ExecRoot); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(d.runDir); err != nil {
		errs = append(errs, fmt.Errorf("stop dockerd: %w", err))
	}
	return errors.Join(errs...)
}

// killUsers SIGKILLs every process whose command line names dir. dir is a
// directory this package created with a random name, so only processes
// started for this daemon can match.
func killUsers(dir string) error {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("stop dockerd: list processes: %w", err)
	}
	self := os.Getpid()
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return nil
}

// unmountBelow unmounts every mount point at or below one of roots, deepest
// first, lazily if it is busy.
func unmountBelow(roots ...string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("stop dockerd: %w", err)
	}
	mounts, err := mountinfo.Parse(data)
	if err != nil {
		return fmt.Errorf("stop dockerd: %w", err)
	}
	mps := mountinfo.Below(mounts, roots...)
	var errs []error
	for _, mp := range mps {
		if err := unix.Unmount(mp, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			if err2 := unix.Unmount(mp, unix.MNT_DETACH); err2 != nil && !errors.Is(err2, unix.EINVAL) {
				errs = append(errs, fmt.Errorf("stop dockerd: umount %s: %w; lazily: %w", mp, err, err2))
			}
		}
	}
	return errors.Join(errs...)
}

// LogTail returns the last n lines of dockerd's log.
func (d *Dockerd) LogTail(n int) string {
	data, err := os.ReadFile(d.Log)
	if err != nil {
		return fmt.Sprintf("(no dockerd log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Command returns the docker CLI with args, set up to talk to this daemon
// only, with the legacy builder (the fixtures rely on its one-layer-per-step
// behaviour and it needs no buildkit daemon).
func (d *Dockerd) Command(args ...string) *exec.Cmd {
	cmd := exec.Command("docker", args...)
	cmd.Env = append(os.Environ(),
		"DOCKER_HOST=unix://"+d.Socket,
		"DOCKER_BUILDKIT=0",
		"DOCKER_CONFIG="+d.cliConfig,
		"DOCKER_CLI_HINTS=false",
	)
	return cmd
}

// Run runs the docker CLI with args and stdin (may be nil) and returns its
// stdout; the error names the argv and carries stderr.
func (d *Dockerd) Run(stdin io.Reader, args ...string) (string, error) {
	cmd := d.Command(args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// StartDockerd starts a private dockerd on dataRoot (see
// StartDockerdProcess) and stops it in t's cleanup, even when the test
// fails, printing the end of its log if it did.
func StartDockerd(t testing.TB, dataRoot string) *Dockerd {
	t.Helper()
	return StartDockerdDriver(t, dataRoot, "btrfs")
}

// StartDockerdDriver is StartDockerd with another storage driver.
func StartDockerdDriver(t testing.TB, dataRoot, driver string) *Dockerd {
	t.Helper()
	RequireRoot(t, "dockerd", "docker")
	d, err := StartDockerdProcessDriver(dataRoot, t.TempDir(), driver)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dockerd log tail (%s):\n%s", d.Log, d.LogTail(20))
		}
		if err := d.Stop(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return d
}

// Docker runs the docker CLI against d and returns its stdout without
// surrounding space, failing t with the argv and stderr on error.
func (d *Dockerd) Docker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := d.Run(nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}
