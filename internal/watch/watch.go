// Package watch is `dockroot watch`: a daemon that follows dockerd's image
// events and keeps the boot directory and the recorded menus in step with
// the tags, through the same code `dockroot update` and `dockroot install`
// use (update.Engine.Sync). A `docker build -t desk:experimental .` or a
// pull gives the tag its kernel, initramfs and menu entry; `docker rmi` of
// a tag removes its entry, never the entry of the image that runs now or
// of the last good one.
//
// Events come in bursts (a build tags, a pull tags and untags), so they are
// debounced: one Sync runs once the daemon has been quiet for a moment.
// Each change is one log line. Every write is Sync's: kernels are staged
// and renamed into place, menus written to a temporary file and renamed,
// so a crash at any point leaves the menu as it was.
//
// It is host-only: it must not import the boot (hook), internal/commands
// or cmd/….
package watch

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/dockroot/dockroot/internal/update"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
)

// Options tune Run.
type Options struct {
	// Debounce is how long dockerd must be quiet before a Sync; default
	// DefaultDebounce.
	Debounce time.Duration
	// Retry is the wait before subscribing again after the event stream
	// broke (dockerd restarted); default 5 s.
	Retry time.Duration
	// Log gets one line per change, and one per lost or regained
	// connection.
	Log func(format string, args ...any)
}

// DefaultDebounce is Options.Debounce's default.
const DefaultDebounce = 2 * time.Second

// relevant are the image events after which the tags may differ.
var relevant = map[events.Action]bool{
	events.ActionTag: true, events.ActionUnTag: true, events.ActionDelete: true,
	events.ActionPull: true, events.ActionImport: true, events.ActionLoad: true,
	events.ActionCreate: true,
}

// Run syncs once, then after every burst of relevant image events, until
// ctx is done (then it returns nil). A failed Sync is logged and tried
// again at the next event; a broken event stream is subscribed again.
func Run(ctx context.Context, e *update.Engine, o Options) error {
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.Retry <= 0 {
		o.Retry = 5 * time.Second
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	w := &watcher{e: e, o: o, said: map[string]string{}}
	w.sync(ctx)
	for ctx.Err() == nil {
		err := w.follow(ctx)
		if ctx.Err() != nil {
			break
		}
		o.Log("lost dockerd's event stream (%v); subscribing again in %v", err, o.Retry)
		select {
		case <-ctx.Done():
		case <-time.After(o.Retry):
			// Whatever happened while the stream was down.
			w.sync(ctx)
		}
	}
	return nil
}

type watcher struct {
	e *update.Engine
	o Options
	// said remembers the last line logged per reference for changes that
	// repeat on every Sync (an entry kept, an install that fails), so
	// that each is logged once until it changes.
	said map[string]string
}

// follow reads events until the stream ends, running sync after each
// quiet period that follows relevant events.
func (w *watcher) follow(ctx context.Context) error {
	sub, cancel := context.WithCancel(ctx)
	defer cancel()
	res := w.e.Client.Events(sub, client.EventsListOptions{Filters: client.Filters{}.Add("type", string(events.ImageEventType))})
	var timer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err, ok := <-res.Err:
			if !ok || err == nil {
				err = errors.New("closed")
			}
			return err
		case m := <-res.Messages:
			if !relevant[m.Action] || strings.HasPrefix(m.Actor.Attributes["name"], update.KeepRepo+":") {
				continue
			}
			timer = time.After(w.o.Debounce)
		case <-timer:
			timer = nil
			w.sync(ctx)
		}
	}
}

func (w *watcher) sync(ctx context.Context) {
	changes, err := w.e.Sync(ctx)
	for _, c := range changes {
		line := c.String()
		if c.Action == "kept" || c.Action == "failed" {
			if w.said[c.Ref] == line {
				continue
			}
			w.said[c.Ref] = line
		} else {
			delete(w.said, c.Ref)
		}
		w.o.Log("%s", line)
	}
	if err != nil && ctx.Err() == nil {
		w.o.Log("sync failed, the menus are as they were: %v", err)
	}
}
