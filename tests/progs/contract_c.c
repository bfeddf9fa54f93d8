/*
 * contract_c: the C side of the contract (prisond/model/contract.py) as the shim sees it.
 * Compiled by tests/test_contract.py with the shim's source included, against a contract.h
 * written from the Python module.
 *   contract_c request PID   -> the shim's proc.status request line
 *   contract_c flat          -> for each line on stdin (a daemon's flat reply), what the shim
 *                               reads: "1 <text, hex>", "0" or "-1"
 */
#include "../../prisond/native/shim/prisonshim.c"

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "request")) {
		char req[256];
		status_request(req, sizeof req, (pid_t)atoi(argv[2]));
		fputs(req, stdout);
		return 0;
	}
	if (argc != 2 || strcmp(argv[1], "flat"))
		return 2;
	char line[PD_FLAT_MAX + 2], text[PD_FLAT_MAX];
	while (fgets(line, sizeof line, stdin)) {
		int rc = flat_reply(line, text, sizeof text);
		printf("%d", rc);
		if (rc == 1) {
			putchar(' ');
			for (const char *t = text; *t; t++)
				printf("%02x", (unsigned char)*t);
		}
		putchar('\n');
	}
	return 0;
}
