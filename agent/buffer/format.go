package buffer

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// On-disk record framing. All integers are little endian.
//
//	offset size field
//	     0    2 magic "BQ"
//	     2    1 format version (1)
//	     3    1 reserved, zero
//	     4    4 payload length
//	     8    4 CRC-32C of bytes 0-7, bytes 12-31 and the payload
//	    12    8 sequence number
//	    20    4 sample count
//	    24    8 append time, unix milliseconds
//	    32    - payload
//
// A segment file is a plain concatenation of records with consecutive
// sequence numbers; its name is the first sequence number as 16 hex digits
// followed by ".seg".
const (
	headerSize    = 32
	formatVersion = 1
	segmentSuffix = ".seg"
)

// errCorrupt marks a record that fails its framing or checksum.
var errCorrupt = errors.New("corrupt record")

// header is the decoded fixed part of a record.
type header struct {
	length  uint32
	crc     uint32
	seq     uint64
	samples uint32
	ms      int64
}

func castagnoli() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) }

// encodeRecord appends the framed record to dst and returns it.
func encodeRecord(dst []byte, seq uint64, samples uint32, ms int64, payload []byte) []byte {
	n := len(dst)
	dst = append(dst, make([]byte, headerSize)...) // in place: a local array would escape to the CRC code
	h := dst[n:]
	h[0], h[1], h[2], h[3] = 'B', 'Q', formatVersion, 0
	binary.LittleEndian.PutUint32(h[4:], uint32(len(payload)))
	binary.LittleEndian.PutUint64(h[12:], seq)
	binary.LittleEndian.PutUint32(h[20:], samples)
	binary.LittleEndian.PutUint64(h[24:], uint64(ms))
	binary.LittleEndian.PutUint32(h[8:], crc32.Update(headerCRC(h), castagnoli(), payload))
	return append(dst, payload...)
}

// headerCRC is the checksum of the header without its CRC field; the
// payload is folded in with crc32.Update.
func headerCRC(b []byte) uint32 {
	return crc32.Update(crc32.Checksum(b[0:8], castagnoli()), castagnoli(), b[12:headerSize])
}

func parseHeader(b []byte) (header, error) {
	if b[0] != 'B' || b[1] != 'Q' || b[2] != formatVersion || b[3] != 0 {
		return header{}, fmt.Errorf("bad magic or version %x: %w", b[0:4], errCorrupt)
	}
	return header{
		length:  binary.LittleEndian.Uint32(b[4:]),
		crc:     binary.LittleEndian.Uint32(b[8:]),
		seq:     binary.LittleEndian.Uint64(b[12:]),
		samples: binary.LittleEndian.Uint32(b[20:]),
		ms:      int64(binary.LittleEndian.Uint64(b[24:])),
	}, nil
}

// crcWriter folds everything written to it into sum.
type crcWriter struct {
	sum uint32
	tab *crc32.Table
}

func (w *crcWriter) Write(p []byte) (int, error) {
	w.sum = crc32.Update(w.sum, w.tab, p)
	return len(p), nil
}

// segment is the in-memory index of one segment file. Its records have the
// consecutive sequence numbers first..last.
type segment struct {
	first, last uint64
	size        int64 // bytes of valid records in the file
	samples     int64 // samples of records that are not acknowledged
}

// unacked returns how many of the segment's records have Seq > acked.
func (s *segment) unacked(acked uint64) int64 {
	switch {
	case s.last < s.first || acked >= s.last:
		return 0
	case acked < s.first:
		return int64(s.last - s.first + 1)
	default:
		return int64(s.last - acked)
	}
}

func segmentName(first uint64) string { return fmt.Sprintf("%016x%s", first, segmentSuffix) }

// scanSegment reads every record of the segment file at path, checking
// framing, sequence and checksum. It truncates the file at the first bad
// record (a torn write from a crash or power loss) and returns the index of
// the good prefix, plus a description of what was cut off, if anything.
func scanSegment(path string, first, acked uint64) (seg segment, torn string, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return segment{}, "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return segment{}, "", err
	}
	seg = segment{first: first, last: first - 1}
	br := bufio.NewReaderSize(f, 64<<10)
	crc := &crcWriter{tab: castagnoli()}
	var b [headerSize]byte
	for seg.size < fi.Size() {
		rest := fi.Size() - seg.size
		if rest < headerSize {
			torn = fmt.Sprintf("%d trailing bytes, shorter than a header", rest)
			break
		}
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return segment{}, "", err
		}
		h, err := parseHeader(b[:])
		if err != nil {
			torn = err.Error()
			break
		}
		if int64(h.length) > rest-headerSize {
			torn = fmt.Sprintf("record %d claims %d payload bytes, only %d left", h.seq, h.length, rest-headerSize)
			break
		}
		if h.seq != seg.last+1 {
			torn = fmt.Sprintf("record has seq %d, want %d", h.seq, seg.last+1)
			break
		}
		crc.sum = headerCRC(b[:])
		if _, err := io.CopyN(crc, br, int64(h.length)); err != nil {
			return segment{}, "", err
		}
		if crc.sum != h.crc {
			torn = fmt.Sprintf("record %d fails its checksum", h.seq)
			break
		}
		seg.last = h.seq
		seg.size += headerSize + int64(h.length)
		if h.seq > acked {
			seg.samples += int64(h.samples)
		}
	}
	if torn != "" {
		if err := f.Truncate(seg.size); err != nil {
			return segment{}, "", fmt.Errorf("truncate torn tail: %w", err)
		}
		if err := f.Sync(); err != nil {
			return segment{}, "", err
		}
	}
	return seg, torn, nil
}
