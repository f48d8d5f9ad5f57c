// Package uevent receives the kernel's device events (uevents) from a
// NETLINK_KOBJECT_UEVENT socket, as udev does, for an initramfs that has no
// udev: dockroot-init listens while it loads modules and waits for the
// root device, so a driver for a device that appears later (a SCSI disk
// found by an asynchronous host scan, USB storage) is loaded, and the
// device wait wakes when a block device appears instead of polling.
//
// Parse is pure; Conn is the socket. It is a leaf: it imports nothing of
// dockroot's, and the init links it.
package uevent

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Event is one kernel uevent.
type Event struct {
	Action    string // add, remove, change, bind, unbind, move, online, offline
	DevPath   string // below /sys, e.g. /devices/pci0000:00/0000:00:04.0/virtio1/block/vda
	Subsystem string // block, pci, virtio, scsi, usb, ...
	Modalias  string // MODALIAS=, the device's driver alias; "" if none
	DevName   string // DEVNAME=, e.g. vda
	DevType   string // DEVTYPE=, e.g. disk, partition
	Env       map[string]string
}

// ErrNotKernel is returned by Parse for a message that is not the kernel's
// own format: udev's re-broadcasts start with "libudev" and carry a binary
// header.
var ErrNotKernel = errors.New("not a kernel uevent")

// Parse reads one netlink message of the kernel's uevent format
// (lib/kobject_uevent.c): "ACTION@DEVPATH", then NUL-separated KEY=VALUE
// pairs.
func Parse(msg []byte) (Event, error) {
	if bytes.HasPrefix(msg, []byte("libudev")) {
		return Event{}, ErrNotKernel
	}
	parts := bytes.Split(bytes.TrimRight(msg, "\x00"), []byte{0})
	head := string(parts[0])
	action, devpath, ok := strings.Cut(head, "@")
	if !ok || action == "" || !strings.HasPrefix(devpath, "/") {
		return Event{}, fmt.Errorf("%w: header %q, want ACTION@/DEVPATH", ErrNotKernel, head)
	}
	ev := Event{Action: action, DevPath: devpath, Env: make(map[string]string, len(parts)-1)}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(string(p), "=")
		if !ok {
			continue
		}
		ev.Env[k] = v
	}
	ev.Subsystem = ev.Env["SUBSYSTEM"]
	ev.Modalias = ev.Env["MODALIAS"]
	ev.DevName = ev.Env["DEVNAME"]
	ev.DevType = ev.Env["DEVTYPE"]
	if a := ev.Env["ACTION"]; a != "" {
		ev.Action = a
	}
	return ev, nil
}

// Conn is a netlink socket subscribed to the kernel's uevents.
type Conn struct {
	fd  int
	buf []byte

	mu      sync.Mutex
	closed  bool
	reading bool
}

// pollInterval is how often a blocked Read looks whether Close was called:
// close(2) does not wake a thread blocked in recvfrom(2), and netlink
// sockets do not implement shutdown(2).
const pollInterval = 200 * time.Millisecond

// kernelGroup is the multicast group the kernel sends uevents to (udev
// re-broadcasts on group 2).
const kernelGroup = 1

// Listen opens the socket. Events that happen from then on are queued for
// Read; a receive buffer of 4 MiB (SO_RCVBUFFORCE as root) holds the burst
// a driver load causes.
func Listen() (*Conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return nil, fmt.Errorf("open uevent socket (netlink NETLINK_KOBJECT_UEVENT): %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	tv := unix.NsecToTimeval(pollInterval.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set uevent socket timeout: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: kernelGroup}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind uevent socket to the kernel's group: %w", err)
	}
	return &Conn{fd: fd, buf: make([]byte, 64<<10)}, nil
}

// ErrOverflow is returned by Read when the kernel dropped events because
// the receive buffer was full (ENOBUFS): the caller should rescan sysfs.
var ErrOverflow = errors.New("uevent socket overflowed: events were lost")

// ErrClosed is returned by Read once Close was called.
var ErrClosed = errors.New("uevent socket closed")

// Read blocks for the next kernel uevent. Messages from other senders
// than the kernel (port ID 0), and udev's, are skipped. Read is for one
// goroutine at a time; Close makes it return ErrClosed within
// pollInterval.
func (c *Conn) Read() (Event, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return Event{}, ErrClosed
	}
	c.reading = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.reading = false
		if c.closed && c.fd >= 0 {
			unix.Close(c.fd)
			c.fd = -1
		}
		c.mu.Unlock()
	}()
	for {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return Event{}, ErrClosed
		}
		n, from, err := unix.Recvfrom(c.fd, c.buf, 0)
		switch {
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.EAGAIN):
			continue
		case errors.Is(err, unix.ENOBUFS):
			return Event{}, ErrOverflow
		case err != nil:
			return Event{}, fmt.Errorf("read uevent socket: %w", err)
		}
		if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
			continue
		}
		ev, err := Parse(c.buf[:n])
		if err != nil {
			continue
		}
		return ev, nil
	}
}

// Close closes the socket: at once when no Read runs, else by that Read
// as it returns.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if !c.reading && c.fd >= 0 {
		err := unix.Close(c.fd)
		c.fd = -1
		return err
	}
	return nil
}
