package rwlayer

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/dockroot/dockroot/internal/layout"
)

// Layer names beside NAME, in NAME's parent directory. Renames between them
// stay in one directory, so they never cross a subvolume (which btrfs
// refuses with EXDEV).
const (
	prevInfix = layout.PrevInfix // NAME.prev.N: the N-th newest previous layer
	tmpSuffix = layout.TmpSuffix // a layer being prepared, or one displaced by an interrupted commit
	// NAME.adopted: the ancestor's layer once a new layer replaced it,
	// outside the numbered sequence so the keep count never deletes it.
	adoptedSuffix = layout.AdoptedSuffix
	// NAME.failed: the layer of the last boot of an image on trial, once
	// a new layer replaced it, outside the numbered sequence so that
	// NAME.prev.1 stays the layer of the last good boot (issue 17 item 10).
	failedSuffix = layout.FailedSuffix
)

func prevName(base string, n int) string { return base + prevInfix + strconv.Itoa(n) }
func tmpName(base string) string         { return base + tmpSuffix }

// prevIndex parses "base.prev.N" (N >= 1, no sign or leading zero).
func prevIndex(base, name string) (int, bool) {
	s, ok := strings.CutPrefix(name, base+prevInfix)
	if !ok || s == "" || s[0] == '0' || len(s) > 9 {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, _ := strconv.Atoi(s)
	return n, true
}

// tmpState is what the temporary name holds.
type tmpState int

const (
	tmpNone    tmpState = iota
	tmpPending          // a new layer that has never been under NAME: delete on recovery
	tmpOld              // a layer that was NAME until an interrupted commit exchanged it out: the newest previous layer
)

// rotation is what planRotation needs to know about the names beside NAME.
// Only layers dockroot owns are described; unowned names stop the caller
// before planning.
type rotation struct {
	Base    string   // base name of NAME
	Keep    int      // previous layers to keep
	Current bool     // NAME exists
	Prevs   []int    // N of every existing NAME.prev.N
	Tmp     tmpState // what NAME.dockroot-tmp holds
	// TmpAdopted: the old layer under the temporary name (tmpOld, or the
	// current one a commit exchanges there) is the adopted ancestor
	// layer. It moves to NAME.adopted instead of into the numbered
	// previous layers, so the keep count never deletes it.
	TmpAdopted bool
	// TmpFailed: the old layer under the temporary name (as for
	// TmpAdopted) was made from an image on trial, not the last good one:
	// a boot that was never marked good. With Keep > 0 it moves to
	// NAME.failed, replacing the layer there, and the previous layers do
	// not shift, so NAME.prev.1 stays the last good boot's layer. With
	// Keep 0 there is no previous layer to protect: it is deleted as
	// before.
	TmpFailed bool
	Failed    bool // NAME.failed exists
}

type stepKind string

const (
	stepExchange stepKind = "exchange" // renameat2(RENAME_EXCHANGE): both names stay occupied
	stepRename   stepKind = "rename"   // renameat2(RENAME_NOREPLACE)
	stepDelete   stepKind = "delete"   // recursive delete of an owned layer
)

// layerStep is one filesystem operation on names in NAME's directory.
type layerStep struct {
	Kind     stepKind
	From, To string // To is empty for a delete
}

func (s layerStep) String() string {
	if s.Kind == stepDelete {
		return "delete " + s.From
	}
	return string(s.Kind) + " " + s.From + " " + s.To
}

// planRotation orders the steps that bring the names beside NAME to their
// final shape: NAME, then NAME.prev.1 … NAME.prev.Keep newest first with no
// gaps, and nothing under the temporary name. NAME.adopted and NAME.failed
// stand outside that sequence (see rotation's TmpAdopted and TmpFailed).
//
// commit: the temporary name holds a complete new layer that becomes NAME.
// The plan's first step puts it there, with an atomic exchange when NAME
// exists, so at every instant NAME holds a complete layer (old before the
// exchange, new after it). The old layer, now under the temporary name, is
// the newest previous layer. Only then are layers beyond Keep deleted —
// never before the new layer is live — and the rest renamed into place.
//
// !commit (recovery before a new layer is prepared): a pending layer under
// the temporary name never went live and is deleted; an old one is rotated
// in as the newest previous layer.
//
// A crash between any two steps leaves a state this function plans from
// again: gaps in the numbering, an old layer under the temporary name, or
// previous layers beyond Keep.
func planRotation(r rotation, commit bool) ([]layerStep, error) {
	if r.Keep < 0 {
		return nil, fmt.Errorf("keep %d: the number of previous layers cannot be negative", r.Keep)
	}
	tmp := tmpName(r.Base)
	var steps []layerStep
	state := r.Tmp
	switch {
	case commit && state != tmpPending:
		return nil, fmt.Errorf("commit %s: no prepared layer under %s", r.Base, tmp)
	case commit && r.Current:
		steps = append(steps, layerStep{stepExchange, tmp, r.Base})
		state = tmpOld
	case commit:
		steps = append(steps, layerStep{stepRename, tmp, r.Base})
		state = tmpNone
	case state == tmpPending:
		steps = append(steps, layerStep{stepDelete, tmp, ""})
		state = tmpNone
	}

	switch {
	case state == tmpOld && r.TmpAdopted:
		steps = append(steps, layerStep{stepRename, tmp, r.Base + adoptedSuffix})
		state = tmpNone
	case state == tmpOld && r.TmpFailed && r.Keep > 0:
		// Only one failed layer is kept: the newest. The older one goes
		// only now that the new layer is live, and before its name is
		// taken. A crash in between leaves the displaced layer under the
		// temporary name, which recovery plans here again.
		if r.Failed {
			steps = append(steps, layerStep{stepDelete, r.Base + failedSuffix, ""})
		}
		steps = append(steps, layerStep{stepRename, tmp, r.Base + failedSuffix})
		state = tmpNone
	}

	// Previous layers, newest first: the one just displaced, then by N.
	var order []string
	if state == tmpOld {
		order = append(order, tmp)
	}
	prevs := append([]int(nil), r.Prevs...)
	sort.Ints(prevs)
	for i, n := range prevs {
		if i > 0 && prevs[i-1] == n {
			return nil, fmt.Errorf("previous layer %s listed twice", prevName(r.Base, n))
		}
		order = append(order, prevName(r.Base, n))
	}

	// Beyond Keep: delete, oldest first, before renaming frees their names.
	for i := len(order) - 1; i >= r.Keep; i-- {
		steps = append(steps, layerStep{stepDelete, order[i], ""})
	}
	// The rest move to NAME.prev.(i+1). A move waits while its target is
	// still the source of another pending move; targets keep the order of
	// the sources, so there is no cycle and this terminates.
	var moves []layerStep
	for i := 0; i < len(order) && i < r.Keep; i++ {
		if to := prevName(r.Base, i+1); order[i] != to {
			moves = append(moves, layerStep{stepRename, order[i], to})
		}
	}
	for len(moves) > 0 {
		progressed := false
		for i, m := range moves {
			blocked := false
			for _, o := range moves {
				if o.From == m.To {
					blocked = true
					break
				}
			}
			if !blocked {
				steps = append(steps, m)
				moves = append(moves[:i], moves[i+1:]...)
				progressed = true
				break
			}
		}
		if !progressed {
			return nil, fmt.Errorf("rotate %s: renames %v form a cycle", r.Base, moves)
		}
	}
	return steps, nil
}
