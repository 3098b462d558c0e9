//go:build !linux

package tftp

import "io/fs"

// keyOf: without an inode number or ctime a version cannot be told apart
// reliably, so nothing is kept in memory.
func keyOf(fs.FileInfo) (fileKey, bool) { return fileKey{}, false }
