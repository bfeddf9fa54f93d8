/* The "small service" of bench/scale_bench.py: listens on 0.0.0.0:PORT (the wildcard, which the
 * kernel layer steers to the prison's own addresses) and answers each connection with one line
 * naming its host, then closes it.  One process, blocking accept: a few hundred KB resident.
 *
 *     tinyserve PORT
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: tinyserve PORT\n");
        return 2;
    }
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 64)) {
        perror("tinyserve");
        return 1;
    }
    char line[128];
    gethostname(line, 64);
    line[64] = 0;
    strcat(line, "\n");
    size_t n = strlen(line);
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0)
            continue;
        if (write(c, line, n) < 0)
            perror("tinyserve: write");
        close(c);
    }
}
