/* metaops: time one metadata phase over N files in DIR (built by fs-tests/bench/run).
 *
 *   metaops create DIR N [BYTES]   open(O_CREAT|O_EXCL) + optional write of BYTES + close
 *   metaops stat   DIR N           stat() every file
 *   metaops unlink DIR N           unlink() every file
 *
 * Files are DIR/f000000 .. DIR/f(N-1). Prints the elapsed seconds of the phase on stdout;
 * exits 1 with "metaops: PHASE NAME: strerror" on the first failure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *phase, const char *name)
{
	fprintf(stderr, "metaops: %s %s: %s\n", phase, name, strerror(errno));
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: metaops create|stat|unlink DIR N [BYTES]\n");
		return 2;
	}
	const char *phase = argv[1];
	long n = atol(argv[3]);
	size_t bytes = argc == 5 ? (size_t)atol(argv[4]) : 0;
	char *buf = NULL;
	if (bytes) {
		buf = malloc(bytes);
		if (!buf)
			return 1;
		for (size_t i = 0; i < bytes; i++)
			buf[i] = (char)(i * 131 + 7);
	}
	int dfd = open(argv[2], O_RDONLY | O_DIRECTORY);
	if (dfd < 0)
		die("open", argv[2]);

	char name[32];
	struct stat st;
	double t0 = now();
	for (long i = 0; i < n; i++) {
		snprintf(name, sizeof name, "f%06ld", i);
		if (!strcmp(phase, "create")) {
			int fd = openat(dfd, name, O_CREAT | O_EXCL | O_WRONLY, 0644);
			if (fd < 0)
				die(phase, name);
			if (bytes && write(fd, buf, bytes) != (ssize_t)bytes)
				die("write", name);
			if (close(fd) < 0)
				die("close", name);
		} else if (!strcmp(phase, "stat")) {
			if (fstatat(dfd, name, &st, 0) < 0)
				die(phase, name);
		} else if (!strcmp(phase, "unlink")) {
			if (unlinkat(dfd, name, 0) < 0)
				die(phase, name);
		} else {
			fprintf(stderr, "metaops: unknown phase '%s'\n", phase);
			return 2;
		}
	}
	printf("%.6f\n", now() - t0);
	return 0;
}
