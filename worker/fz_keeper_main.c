/*  fz-keeper: the keeper spawner's program (fz_keeper.h, "the spawner"). fz-worker starts it
    as `fz-keeper --spawner` with its socket on descriptor 3; it is not meant to be run by
    hand. Exit status: 0 when fz-worker is gone, 2 on bad usage. */

#include "fz_keeper.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf("usage: fz-keeper --spawner\n\nStarted by fz-worker (with its socket on "
               "descriptor 3) to fork the keepers of its agents; not meant to be run by "
               "hand.\nExit status: 0 once fz-worker is gone, 2 on bad usage.\n");
        return 0;
    }
    if (argc == 2 && (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0)) {
        printf("fz-keeper " FZ_VERSION "\n");
        return 0;
    }
    if (argc != 2 || strcmp(argv[1], "--spawner") != 0) {
        fprintf(stderr, "usage: fz-keeper --spawner (started by fz-worker)\n");
        return 2;
    }
    fz_keeper_spawner_main(3);
}
