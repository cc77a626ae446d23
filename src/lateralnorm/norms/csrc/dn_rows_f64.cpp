// The double-precision rows of dn_rows.cpp (rows_forward_f64, rows_backward_f64): the same source compiled as
// a second translation unit, so that the kernel's two halves build in parallel (about half its compile time).
#define LN_DN_ROWS_F64
#include "dn_rows.cpp"
