"""pyvisor.sentry.vdso: the vDSO image (vdso.c, vdso.lds, built by build.py into image.py)."""
