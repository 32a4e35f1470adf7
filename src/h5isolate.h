/* h5isolate.h - private to h5util.c and h5isolate.c: the beat of the isolated reader (the public
 * jt_h5_isolated is in include/jtrain/h5util.h). */
#ifndef JTRAIN_H5ISOLATE_H
#define JTRAIN_H5ISOLATE_H

/* Tells the parent of an isolated reader that the child is still making progress (a no-op
 * outside the reading child). h5util calls it around every HDF5 access; cheap (one atomic add). */
void jt_h5_beat(void);

#endif
