package kmod

import (
	"fmt"
	"sort"
	"sync"
	"time"
)

// Inserter loads one module into the kernel. *Loader is the real one
// (finit_module); tests use a fake that records the order.
type Inserter interface {
	Load(m Module) (Outcome, error)
}

// Set loads modules of a Table on demand, each at most once, every module
// after its hard and "pre:" dependencies and, where nothing orders them,
// in parallel: finit_module runs a module's init (a driver's probe of its
// devices, which may wait on hardware) in the calling thread, so
// independent drivers probe side by side as udev's workers make them do.
// Want may be called from several goroutines (the coldplug scan and the
// uevent listener).
type Set struct {
	table *Table
	ins   Inserter
	log   func(format string, args ...any)
	sem   chan struct{}

	mu       sync.Mutex
	idle     *sync.Cond
	inflight int
	wanted   []bool
	done     []chan struct{}
	out      []Outcome
	errs     []error
	finished []int // indices in the order their loads ended
}

// NewSet returns a Set loading t's modules with ins, at most parallel at
// a time (at least 1).
func NewSet(t *Table, ins Inserter, parallel int, log func(format string, args ...any)) *Set {
	if parallel < 1 {
		parallel = 1
	}
	s := &Set{
		table:  t,
		ins:    ins,
		log:    log,
		sem:    make(chan struct{}, parallel),
		wanted: make([]bool, len(t.Modules)),
		done:   make([]chan struct{}, len(t.Modules)),
		out:    make([]Outcome, len(t.Modules)),
		errs:   make([]error, len(t.Modules)),
	}
	for i := range s.done {
		s.done[i] = make(chan struct{})
	}
	s.idle = sync.NewCond(&s.mu)
	return s
}

func (s *Set) logf(format string, args ...any) {
	if s.log != nil {
		s.log(format, args...)
	}
}

// Want schedules the modules idx with their dependencies and returns how
// many modules were not scheduled before. It does not wait.
func (s *Set) Want(idx ...int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, i := range idx {
		n += s.want(i)
	}
	return n
}

// want schedules i and what it needs; s.mu is held.
func (s *Set) want(i int) int {
	if i < 0 || i >= len(s.wanted) || s.wanted[i] {
		return 0
	}
	s.wanted[i] = true
	n := 1
	m := s.table.Modules[i]
	for _, d := range m.Deps {
		n += s.want(d)
	}
	for _, d := range m.Pre {
		n += s.want(d)
	}
	s.inflight++
	go s.load(i)
	return n
}

func (s *Set) load(i int) {
	m := s.table.Modules[i]
	var blocked error
	for _, d := range m.Deps {
		<-s.done[d]
		if s.out[d] == Failed && blocked == nil {
			blocked = fmt.Errorf("not loaded: it needs %s, which failed", s.table.Modules[d].Name)
		}
	}
	for _, d := range m.Pre {
		<-s.done[d] // soft: its failure does not stop this one
	}
	var (
		out Outcome
		err error
	)
	start := time.Now()
	if blocked != nil {
		out, err = Failed, blocked
	} else {
		s.sem <- struct{}{}
		out, err = s.ins.Load(Module{Path: m.Path})
		<-s.sem
	}
	if err != nil {
		out = Failed
		s.logf("module %s: failed: %v", m.Name, err)
	} else {
		s.logf("module %s: %s (%s)", m.Name, out, time.Since(start).Round(time.Microsecond))
	}

	s.mu.Lock()
	s.out[i], s.errs[i] = out, err
	s.finished = append(s.finished, i)
	close(s.done[i])
	if out != Failed {
		for _, p := range m.Post {
			s.want(p)
		}
	}
	s.inflight--
	if s.inflight == 0 {
		s.idle.Broadcast()
	}
	s.mu.Unlock()
}

// Wait blocks until every module wanted so far (and the "post:" soft
// dependencies they pulled in) has been tried.
func (s *Set) Wait() {
	s.mu.Lock()
	for s.inflight > 0 {
		s.idle.Wait()
	}
	s.mu.Unlock()
}

// Result says what happened to each module tried so far, by outcome,
// names sorted.
func (s *Set) Result() Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	res := Result{}
	for _, i := range s.finished {
		res[s.out[i]] = append(res[s.out[i]], s.table.Modules[i].Name)
	}
	for _, names := range res {
		sort.Strings(names)
	}
	return res
}

// Finished returns the module indices in the order their loads ended.
func (s *Set) Finished() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.finished...)
}

// Failures lists the modules that failed so far, in the order they ended.
func (s *Set) Failures() []Failure {
	s.mu.Lock()
	defer s.mu.Unlock()
	var fs []Failure
	for _, i := range s.finished {
		if s.out[i] == Failed {
			m := s.table.Modules[i]
			fs = append(fs, Failure{Module: Module{Path: m.Path}, Err: s.errs[i]})
		}
	}
	return fs
}
