/* samples: see samples.h. */
#include "samples.h"

#include <math.h>
#include <stdlib.h>

static int samples_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void samples_sort(double *v, long n)
{
    if (n > 1)
        qsort(v, (size_t)n, sizeof *v, samples_cmp);
}

double samples_percentile(const double *sorted, long n, double p)
{
    if (n <= 0)
        return 0;
    long i = (long)ceil(p / 100.0 * (double)n) - 1;
    return sorted[i < 0 ? 0 : (i >= n ? n - 1 : i)];
}
