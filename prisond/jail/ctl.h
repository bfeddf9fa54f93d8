/* prisonjail's two halves, one static binary: the jail (prisonjail.c) and prisonctl's fast path (ctl.c). */
#ifndef PRISONJAIL_CTL_H
#define PRISONJAIL_CTL_H

int enter_main(int argc, char **argv); /* prisonjail enter ARGS (without "enter") */
int ctl_main(int argc, char **argv);   /* run as prisonctl */

#endif
