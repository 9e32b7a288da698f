#ifndef SWIFTRESNET_CLAPACK_SHIM_H
#define SWIFTRESNET_CLAPACK_SHIM_H
// LAPACK from Debian's liblapack-dev (Fortran calling convention: every argument by pointer).
// Symmetric eigen-decomposition, divide and conquer: what ZCA whitening needs.
void ssyevd_(const char *jobz, const char *uplo, const int *n, float *a, const int *lda, float *w,
             float *work, const int *lwork, int *iwork, const int *liwork, int *info);
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
             double *work, const int *lwork, int *iwork, const int *liwork, int *info);
// BLAS (Debian's libblas, or OpenBLAS through update-alternatives when libopenblas is installed).
void ssyrk_(const char *uplo, const char *trans, const int *n, const int *k, const float *alpha,
            const float *a, const int *lda, const float *beta, float *c, const int *ldc);
void sgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k,
            const float *alpha, const float *a, const int *lda, const float *b, const int *ldb,
            const float *beta, float *c, const int *ldc);
#endif
