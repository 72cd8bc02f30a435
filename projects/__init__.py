"""Safe people and safe projects: organisations, accreditation, applications, the DAC, projects, the register."""
