/*  spare_test: fz_spare's names (pure) and its pool against a real folder: fill, take into
    place (never over an existing entry), leftovers of a dead maker removed, a live maker's
    and non-empty ones kept, destroy removing what was not used, and task folders left empty
    taken back (as spares, or removed) while any other stays. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../worker/fz_spare.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char s_root[64];

static int s_setup(void **state)
{
    (void)state;
    snprintf(s_root, sizeof s_root, "/tmp/fz_spare_test.XXXXXX");
    return mkdtemp(s_root) ? 0 : -1;
}

/* Every entry of the root, then the root: the tests make only folders and one file. */
static int s_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_root);
    return system(cmd) == 0 ? 0 : -1;
}

static int s_count(const char *prefix)
{
    DIR *d = opendir(s_root);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    if (d)
        closedir(d);
    return n;
}

static bool s_is_dir(const char *name)
{
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", s_root, name);
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void test_names(void **state)
{
    (void)state;
    char buf[48];
    assert_true(fz_spare_name(1234, 7, buf, sizeof buf));
    assert_string_equal(buf, ".fz-spare-1234-7");
    assert_int_equal(fz_spare_owner(buf), 1234);
    assert_false(fz_spare_name(1234, 7, buf, 10)); /* does not fit */
    assert_int_equal(fz_spare_owner(".fz-spare-1234-"), 0);
    assert_int_equal(fz_spare_owner(".fz-spare--7"), 0);
    assert_int_equal(fz_spare_owner(".fz-spare-12x-7"), 0);
    assert_int_equal(fz_spare_owner(".fz-spare-12-7x"), 0);
    assert_int_equal(fz_spare_owner(".fz-spare-0-1"), 0);
    assert_int_equal(fz_spare_owner("1234"), 0);
    assert_int_equal(fz_spare_owner(".fz-spare-99999999999-1"), 0);
}

static void test_fill_take_destroy(void **state)
{
    (void)state;
    fz_spare_t *sp = fz_spare_new(s_root);
    assert_non_null(sp);
    assert_false(fz_spare_take(sp, "41")); /* none ready yet */
    assert_int_equal(fz_spare_fill(sp), FZ_SPARE_KEEP);
    assert_int_equal(fz_spare_fill(sp), 0); /* full */
    assert_int_equal(s_count(FZ_SPARE_PREFIX), FZ_SPARE_KEEP);

    assert_true(fz_spare_take(sp, "42"));
    assert_true(s_is_dir("42"));
    assert_int_equal(fz_spare_ready(sp), FZ_SPARE_KEEP - 1);
    /* never over what is there: an earlier attempt's folder, with its log */
    char log[PATH_MAX];
    snprintf(log, sizeof log, "%s/42/attempt-1.log", s_root);
    FILE *f = fopen(log, "w");
    assert_non_null(f);
    fclose(f);
    assert_false(fz_spare_take(sp, "42"));
    assert_int_equal(fz_spare_ready(sp), FZ_SPARE_KEEP - 1);
    assert_int_equal(access(log, F_OK), 0);
    /* nor over an empty folder someone made */
    char empty[PATH_MAX];
    snprintf(empty, sizeof empty, "%s/43", s_root);
    assert_int_equal(mkdir(empty, 0755), 0);
    assert_false(fz_spare_take(sp, "43"));

    /* a spare removed behind its back: the next one, or none */
    assert_int_equal(fz_spare_fill(sp), 1);
    char name[NAME_MAX + 1];
    DIR *d = opendir(s_root);
    for (struct dirent *e; (e = readdir(d));)
        if (fz_spare_owner(e->d_name) == getpid()) {
            snprintf(name, sizeof name, "%s", e->d_name);
            break;
        }
    closedir(d);
    char path[PATH_MAX + NAME_MAX];
    snprintf(path, sizeof path, "%s/%s", s_root, name);
    assert_int_equal(rmdir(path), 0);
    assert_true(fz_spare_take(sp, "44"));
    assert_true(s_is_dir("44"));

    fz_spare_destroy(&sp);
    assert_null(sp);
    fz_spare_destroy(&sp); /* NULL accepted */
    assert_int_equal(s_count(FZ_SPARE_PREFIX), 0);
    assert_false(fz_spare_take(NULL, "45"));
    assert_int_equal(fz_spare_fill(NULL), 0);
}

/* A dead maker's empty spares go at start; a live maker's, and one not empty, stay. */
static void test_leftovers(void **state)
{
    (void)state;
    pid_t dead = fork();
    if (dead == 0)
        _exit(0);
    assert_int_equal(waitpid(dead, NULL, 0), dead);
    char name[48], path[PATH_MAX];
    assert_true(fz_spare_name(dead, 1, name, sizeof name));
    snprintf(path, sizeof path, "%s/%s", s_root, name);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_true(fz_spare_name(dead, 2, name, sizeof name));
    snprintf(path, sizeof path, "%s/%s", s_root, name);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/%s/keep", s_root, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_true(fz_spare_name(getppid(), 3, name, sizeof name));
    snprintf(path, sizeof path, "%s/%s", s_root, name);
    assert_int_equal(mkdir(path, 0755), 0);

    fz_spare_t *sp = fz_spare_new(s_root);
    assert_non_null(sp);
    assert_int_equal(s_count(FZ_SPARE_PREFIX), 2);
    assert_int_equal(fz_spare_ready(sp), 0); /* nobody else's is ever used */
    fz_spare_destroy(&sp);
    assert_int_equal(s_count(FZ_SPARE_PREFIX), 2);
    assert_null(fz_spare_new("/nonexistent/fz_spare_test"));
}

static void s_touch(const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", s_root, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
}

/* A task folder the attempt left empty goes back to the spares, and the next task's folder
   is that same inode; one with anything in it, a symlink, or one whose mode the agent
   changed is never reused (the last is removed); with the spares full, an empty one is
   removed. */
static void test_give_back(void **state)
{
    (void)state;
    fz_spare_t *sp = fz_spare_new(s_root);
    assert_non_null(sp);
    assert_false(fz_spare_give_back(sp, "1")); /* not there */
    assert_int_equal(fz_spare_fill(sp), FZ_SPARE_KEEP);
    assert_true(fz_spare_take(sp, "1"));
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/1", s_root);
    assert_int_equal(stat(path, &st), 0);
    ino_t ino = st.st_ino;
    assert_true(fz_spare_give_back(sp, "1"));
    assert_false(s_is_dir("1"));
    assert_int_equal(fz_spare_ready(sp), FZ_SPARE_KEEP);
    assert_int_equal(s_count(FZ_SPARE_PREFIX), FZ_SPARE_KEEP);
    assert_true(fz_spare_take(sp, "2")); /* the newest spare first: the folder given back */
    snprintf(path, sizeof path, "%s/2", s_root);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_ino, ino);

    /* what the attempt left stays */
    s_touch("2/attempt-1.log");
    assert_false(fz_spare_give_back(sp, "2"));
    assert_true(s_is_dir("2"));
    assert_int_equal(fz_spare_ready(sp), FZ_SPARE_KEEP - 1);
    assert_int_equal(fz_spare_fill(sp), 1);
    assert_true(fz_spare_take(sp, "3"));
    assert_true(fz_spare_take(sp, "4"));
    s_touch("3/.hidden");
    assert_false(fz_spare_give_back(sp, "3"));
    /* a symlink in the folder's place is not followed */
    char link[PATH_MAX];
    snprintf(link, sizeof link, "%s/5", s_root);
    snprintf(path, sizeof path, "%s/4", s_root);
    assert_int_equal(symlink(path, link), 0);
    assert_false(fz_spare_give_back(sp, "5"));
    /* an empty folder whose mode changed is removed, not reused */
    assert_int_equal(chmod(path, 0500), 0);
    assert_true(fz_spare_give_back(sp, "4"));
    assert_false(s_is_dir("4"));
    assert_int_equal(fz_spare_ready(sp), 0);
    /* spares full: an empty folder is removed */
    assert_int_equal(fz_spare_fill(sp), FZ_SPARE_KEEP);
    snprintf(path, sizeof path, "%s/6", s_root);
    assert_int_equal(mkdir(path, 0777), 0);
    assert_true(fz_spare_give_back(sp, "6"));
    assert_false(s_is_dir("6"));
    assert_int_equal(s_count(FZ_SPARE_PREFIX), FZ_SPARE_KEEP);
    fz_spare_destroy(&sp);
    assert_false(fz_spare_give_back(NULL, "2"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test_setup_teardown(test_fill_take_destroy, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_leftovers, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_give_back, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
