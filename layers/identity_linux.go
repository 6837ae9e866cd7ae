package layers

import (
	"io/fs"
	"syscall"
)

// sysID adds the change time, device and inode of fi to id.
func sysID(fi fs.FileInfo, id *fileID) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.ctime = st.Ctim.Nano()
		id.dev, id.ino = st.Dev, st.Ino
	}
}
