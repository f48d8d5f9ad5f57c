package containerd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime/debug"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/dockroot/dockroot/snapshot"
)

// defaultLockTimeout bounds the wait for a database's shared lock. bbolt
// takes flock(LOCK_SH) even read-only and, without a timeout, waits for
// ever while a writer (a running containerd holds LOCK_EX for as long as
// it has the database open) keeps it.
const defaultLockTimeout = 2 * time.Second

// copyTries is how often a private copy of a locked database is made and
// read before giving up: a copy taken while containerd commits may catch
// pages of two transactions, which bbolt's meta checksums do not cover.
const copyTries = 3

// maxDBSize is the largest database file copied when it is locked.
const maxDBSize = 1 << 30

// viewDB runs fn in a read-only transaction of the bbolt file name (slash
// path below the store root, opened through fsys so that no symlink is
// followed), full naming it in errors. A lock held past timeout makes it
// read a private copy instead. Every panic or memory fault inside bbolt
// (it mmaps the file, and a damaged file can send it past the end) comes
// back as a *DBError: PID 1 must not die of a bad file.
//
// locked remembers, per file, that the lock was held: later reads of that
// file copy it at once instead of waiting again (a store resolves many
// images, each reading the snapshotter's database).
func viewDB(fsys fs.FS, name, full string, timeout time.Duration, locked *sync.Map, fn func(tx *bolt.Tx) error) error {
	if timeout <= 0 {
		timeout = defaultLockTimeout
	}
	if _, ok := locked.Load(name); !ok {
		f, err := openRegular(fsys, name, full, maxDBSize)
		if err != nil {
			return err
		}
		err = viewFile(f, full, &bolt.Options{ReadOnly: true, Timeout: timeout}, fn)
		if !errors.Is(err, bolt.ErrTimeout) {
			return err
		}
		locked.Store(name, true)
	}
	var last error
	for i := 0; i < copyTries; i++ {
		// fn's own answer from a readable copy (an image not found, not
		// unpacked, a missing blob) is the answer, not a failure to read
		// past the lock; only a copy that could not be read, or a
		// damaged one (possibly torn by a concurrent commit), is tried
		// again and then reported as locked.
		var fnErr error
		last = viewCopy(fsys, name, full, func(tx *bolt.Tx) error {
			fnErr = fn(tx)
			return fnErr
		})
		if last == nil {
			return nil
		}
		var dbErr *DBError
		if !errors.As(last, &dbErr) {
			if fnErr != nil && last == fnErr {
				return last
			}
			break
		}
	}
	return &LockedError{Path: full, Timeout: timeout, Err: last}
}

// openRegular opens name beneath the store root and checks that it is a
// regular file of at most limit bytes.
func openRegular(fsys fs.FS, name, full string, limit int64) (*os.File, error) {
	f, err := fsys.Open(name)
	if err != nil {
		if serr := snapshot.StoreOpenError(full, limit, err); serr != nil {
			return nil, serr
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = &snapshot.StoreFileError{Path: full, Limit: limit, Reason: fmt.Sprintf("is not a regular file (mode %s)", fi.Mode())}
	} else if err == nil && fi.Size() == 0 {
		// bbolt would try to initialise an empty file as a new database.
		err = &DBError{Path: full, Err: errors.New("the file is empty")}
	} else if err == nil && fi.Size() > limit {
		err = &snapshot.StoreFileError{Path: full, Limit: limit, Reason: fmt.Sprintf("is larger than the limit (%d bytes)", fi.Size())}
	}
	osf, ok := f.(*os.File)
	if err == nil && !ok {
		err = fmt.Errorf("open %s: not a file of the operating system", full)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return osf, nil
}

// viewFile opens the already opened file f with bbolt and runs fn. bbolt
// reopens by path; OpenFile hands it f instead, so the file read is the
// one checked, wherever the path leads now.
func viewFile(f *os.File, full string, opts *bolt.Options, fn func(tx *bolt.Tx) error) (err error) {
	handed := false
	opts.OpenFile = func(string, int, os.FileMode) (*os.File, error) {
		if handed {
			return nil, errors.New("reopened")
		}
		handed = true
		return f, nil
	}
	defer func() {
		if !handed {
			f.Close()
		}
	}()
	defer func(old bool) {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			err = &DBError{Path: full, Err: fmt.Errorf("bbolt failed reading it: %v", r)}
		}
	}(debug.SetPanicOnFault(true))
	db, err := bolt.Open(full, 0, opts)
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return err
		}
		return &DBError{Path: full, Err: err}
	}
	defer db.Close()
	return db.View(fn)
}

// viewCopy copies the database into a private temporary file, which no
// one else locks, and reads that.
func viewCopy(fsys fs.FS, name, full string, fn func(tx *bolt.Tx) error) error {
	src, err := openRegular(fsys, name, full, maxDBSize)
	if err != nil {
		return err
	}
	defer src.Close()
	tmp, err := os.CreateTemp("", "dockroot-containerd-*.db")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, io.LimitReader(src, maxDBSize)); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		tmp.Close()
		return err
	}
	return viewFile(tmp, full, &bolt.Options{ReadOnly: true, Timeout: time.Second}, fn)
}

// bucket walks the nested buckets path from tx; nil if one is missing.
func bucket(tx *bolt.Tx, path ...string) *bolt.Bucket {
	b := tx.Bucket([]byte(path[0]))
	for _, p := range path[1:] {
		if b == nil {
			return nil
		}
		b = b.Bucket([]byte(p))
	}
	return b
}

// decodeVarint reads a value containerd stores with binary.PutVarint
// (a descriptor's size).
func decodeVarint(b []byte) (int64, error) {
	v, n := binary.Varint(b)
	if n <= 0 || n != len(b) {
		return 0, fmt.Errorf("value %x is not a varint", b)
	}
	return v, nil
}

// decodeUvarint reads a value containerd stores with binary.PutUvarint
// (a snapshot's ID in the snapshotter's database).
func decodeUvarint(b []byte) (uint64, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 || n != len(b) {
		return 0, fmt.Errorf("value %x is not a uvarint", b)
	}
	return v, nil
}

// decodeTime reads a time containerd stores with time.MarshalBinary
// (createdat); a missing or unreadable one is the zero time.
func decodeTime(b []byte) time.Time {
	var t time.Time
	if b == nil || t.UnmarshalBinary(b) != nil {
		return time.Time{}
	}
	return t
}
