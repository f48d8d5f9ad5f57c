package toplayer

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkApply measures Apply over a fresh destination each iteration.
// Run with `go test -bench Apply -benchtime 3x ./toplayer`.
func BenchmarkApply(b *testing.B) {
	b.Run("10k-small-files", func(b *testing.B) {
		src := b.TempDir()
		for d := 0; d < 100; d++ {
			dir := filepath.Join(src, fmt.Sprintf("d%03d", d))
			if err := os.Mkdir(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			for i := 0; i < 100; i++ {
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)), []byte(fmt.Sprintf("file %d/%d\n", d, i)), 0o644); err != nil {
					b.Fatal(err)
				}
			}
		}
		benchApply(b, src)
	})
	b.Run("4-large-files", func(b *testing.B) {
		src := b.TempDir()
		buf := make([]byte, 32<<20)
		if _, err := rand.Read(buf); err != nil {
			b.Fatal(err)
		}
		for i := 0; i < 4; i++ {
			if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("big%d", i)), buf, 0o644); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(4 * len(buf)))
		benchApply(b, src)
	})
}

func benchApply(b *testing.B, src string) {
	parent := b.TempDir()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		root := filepath.Join(parent, fmt.Sprintf("root%d", i))
		if err := os.Mkdir(root, 0o755); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := Apply(root, src); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(root); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
