/* The floating-point type of the whole engine.
 * Production builds use float. The gradient-check tests build kernels/ and core/ a second
 * time with LORASC_REAL_DOUBLE so that finite differences run in double precision. */
#ifndef LORASC_REAL_H
#define LORASC_REAL_H

#ifdef LORASC_REAL_DOUBLE
typedef double Real;
#define REAL_NAME "f64"
#else
typedef float Real;
#define REAL_NAME "f32"
#endif

#endif
