package kmod

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// recordingLoader is a fake Inserter: it records when each load starts and
// ends, holds each for a moment so overlapping loads overlap, and answers
// from a table of errors by module name.
type recordingLoader struct {
	mu       sync.Mutex
	start    map[string]int // module -> event number at start
	end      map[string]int
	events   int
	running  int
	maxConc  int
	answers  map[string]error
	outcomes map[string]Outcome
	hold     time.Duration
}

func newRecordingLoader() *recordingLoader {
	return &recordingLoader{start: map[string]int{}, end: map[string]int{}, answers: map[string]error{}, outcomes: map[string]Outcome{}, hold: 20 * time.Millisecond}
}

func (r *recordingLoader) Load(m Module) (Outcome, error) {
	name := m.Name()
	r.mu.Lock()
	if _, dup := r.start[name]; dup {
		r.mu.Unlock()
		panic("module " + name + " loaded twice")
	}
	r.events++
	r.start[name] = r.events
	r.running++
	r.maxConc = max(r.maxConc, r.running)
	r.mu.Unlock()

	time.Sleep(r.hold)

	r.mu.Lock()
	defer r.mu.Unlock()
	r.running--
	r.events++
	r.end[name] = r.events
	if err := r.answers[name]; err != nil {
		return Failed, err
	}
	if o := r.outcomes[name]; o != "" {
		return o, nil
	}
	return Loaded, nil
}

func TestSetOrderAndParallelism(t *testing.T) {
	tab := sampleTable()
	cases := []struct {
		name     string
		want     []string // module names wanted
		loaded   []string // what must have been loaded, sorted
		parallel int
		minConc  int // at least this many loads overlapped
	}{
		{"btrfs pulls its dependency and soft dependency", []string{"btrfs"}, []string{"btrfs", "crc32c_generic", "libcrc32c"}, 8, 2},
		{"independent drivers load side by side", []string{"virtio_pci", "virtio_blk", "ahci"}, []string{"ahci", "virtio_blk", "virtio_pci"}, 8, 3},
		{"post: soft dependency follows", []string{"ext4"}, []string{"crc16", "ext4"}, 8, 1},
		{"parallel 1 loads one at a time", []string{"btrfs", "ahci", "virtio_pci"}, []string{"ahci", "btrfs", "crc32c_generic", "libcrc32c", "virtio_pci"}, 1, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecordingLoader()
			s := NewSet(tab, r, tc.parallel, nil)
			var idx []int
			for _, n := range tc.want {
				idx = append(idx, tab.Lookup(n))
			}
			s.Want(idx...)
			s.Want(idx...) // wanted twice: loaded once (the fake panics otherwise)
			s.Wait()
			got := s.Result()[Loaded]
			if !slices.Equal(got, tc.loaded) {
				t.Fatalf("loaded %v, want %v", got, tc.loaded)
			}
			// Every module started after each of its dependencies and pre:
			// soft dependencies ended; a post: one started after it.
			for i, m := range tab.Modules {
				st, ok := r.start[m.Name]
				if !ok {
					continue
				}
				for _, d := range append(slices.Clone(m.Deps), m.Pre...) {
					dn := tab.Modules[d].Name
					if r.end[dn] == 0 || r.end[dn] > st {
						t.Errorf("module %d %s started (event %d) before its dependency %s ended (event %d)", i, m.Name, st, dn, r.end[dn])
					}
				}
				for _, p := range m.Post {
					pn := tab.Modules[p].Name
					if r.start[pn] < r.end[m.Name] {
						t.Errorf("post: soft dependency %s started before %s ended", pn, m.Name)
					}
				}
			}
			if r.maxConc < tc.minConc || r.maxConc > tc.parallel {
				t.Errorf("%d loads ran at once, want between %d and %d", r.maxConc, tc.minConc, tc.parallel)
			}
		})
	}
}

func TestSetFailures(t *testing.T) {
	tab := sampleTable()
	r := newRecordingLoader()
	r.answers["libcrc32c"] = fmt.Errorf("finit_module: %w", unix.ENOEXEC)
	r.answers["crc32c_generic"] = errors.New("soft failure")
	r.outcomes["ahci"] = NoDevice
	s := NewSet(tab, r, 4, nil)
	s.Want(tab.Lookup("btrfs"), tab.Lookup("ahci"))
	s.Wait()
	res := s.Result()
	if !slices.Equal(res[Failed], []string{"btrfs", "crc32c_generic", "libcrc32c"}) || !slices.Equal(res[NoDevice], []string{"ahci"}) {
		t.Fatalf("result %v; want btrfs, crc32c_generic and libcrc32c failed, ahci no device", res)
	}
	if _, tried := r.start["btrfs"]; tried {
		t.Error("btrfs was loaded although its hard dependency failed")
	}
	fails := s.Failures()
	var msgs []string
	for _, f := range fails {
		msgs = append(msgs, f.Module.Name()+": "+f.Err.Error())
	}
	all := strings.Join(msgs, "\n")
	if !strings.Contains(all, "btrfs: not loaded: it needs libcrc32c, which failed") || !strings.Contains(all, "exec format error") {
		t.Errorf("failures do not say why:\n%s", all)
	}
}

func TestSetConcurrentWant(t *testing.T) {
	tab := sampleTable()
	r := newRecordingLoader()
	r.hold = time.Millisecond
	s := NewSet(tab, r, 3, nil)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range tab.Modules {
				s.Want(i)
			}
		}()
	}
	wg.Wait()
	s.Wait()
	if n := len(s.Finished()); n != len(tab.Modules) {
		t.Errorf("%d modules finished, want %d", n, len(tab.Modules))
	}
}
