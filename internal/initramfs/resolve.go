package initramfs

import (
	"fmt"
	"strings"
)

// Request is a module asked for by name (a module name or an alias).
// A Required request that nothing provides is an error; an optional one (the
// default list) is skipped, because not every kernel builds every driver.
type Request struct {
	Name     string
	Required bool
}

// Plan is the resolved module set in load order.
type Plan struct {
	Load    []string // module names, each after everything it needs
	Builtin []string // requested names the kernel image already provides
	Missing []string // optional requests and soft dependencies nothing provides
}

// ErrModuleNotFound is wrapped by the error for a required module that is
// neither a module file, an alias nor built in.
var ErrModuleNotFound = fmt.Errorf("module not found")

// Resolve closes reqs over hard dependencies (modules.dep) and soft
// dependencies (modules.softdep, "pre:" and "post:"), and orders the result
// so that every module comes after its hard dependencies and its "pre:" soft
// dependencies, as modprobe would load them.
//
// Soft dependencies are best effort, as in modprobe: one that nothing
// provides is listed in Missing, and one that leads back to a module being
// resolved is not followed. A cycle of hard dependencies is an error (depmod
// refuses to write one, so it means a broken database).
func (db *DB) Resolve(reqs []Request) (*Plan, error) {
	r := &resolver{db: db, state: map[string]int{}, plan: &Plan{}}
	for _, req := range reqs {
		mods, builtin := db.Lookup(req.Name)
		switch {
		case len(mods) > 0:
			for _, m := range mods {
				if err := r.visit(m); err != nil {
					return nil, err
				}
			}
		case builtin:
			r.note(&r.plan.Builtin, ModName(req.Name))
		case req.Required:
			return nil, fmt.Errorf("%w: %q is neither a module file, a module alias nor built in", ErrModuleNotFound, req.Name)
		default:
			r.note(&r.plan.Missing, ModName(req.Name))
		}
	}
	return r.plan, nil
}

const (
	unvisited = iota
	visiting
	done
)

type resolver struct {
	db    *DB
	state map[string]int
	stack []string
	plan  *Plan
}

// note appends name to list unless it is there already.
func (r *resolver) note(list *[]string, name string) {
	for _, n := range *list {
		if n == name {
			return
		}
	}
	*list = append(*list, name)
}

func (r *resolver) visit(name string) error {
	switch r.state[name] {
	case done:
		return nil
	case visiting:
		return fmt.Errorf("module dependency cycle: %s -> %s", strings.Join(r.stack, " -> "), name)
	}
	if _, ok := r.db.paths[name]; !ok {
		return fmt.Errorf("%w: %s is needed by %s but has no module file in modules.dep",
			ErrModuleNotFound, name, strings.Join(r.stack, " -> "))
	}
	r.state[name] = visiting
	r.stack = append(r.stack, name)

	for _, s := range r.db.softPre[name] {
		if err := r.visitSoft(s); err != nil {
			return err
		}
	}
	for _, d := range r.db.deps[name] {
		if err := r.visit(d); err != nil {
			return err
		}
	}

	r.stack = r.stack[:len(r.stack)-1]
	r.state[name] = done
	r.plan.Load = append(r.plan.Load, name)

	for _, s := range r.db.softPost[name] {
		if err := r.visitSoft(s); err != nil {
			return err
		}
	}
	return nil
}

// visitSoft follows a soft dependency, which may name an alias.
func (r *resolver) visitSoft(name string) error {
	mods, builtin := r.db.Lookup(name)
	if len(mods) == 0 {
		if !builtin {
			r.note(&r.plan.Missing, ModName(name))
		}
		return nil
	}
	for _, m := range mods {
		if r.state[m] == visiting {
			continue
		}
		if err := r.visit(m); err != nil {
			return err
		}
	}
	return nil
}
